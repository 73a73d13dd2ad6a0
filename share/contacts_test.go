package share

import (
	"errors"
	"testing"
	"time"

	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
)

// A newer card for a key already pinned (the provider's node has new
// addresses) is taken even when another contact shows the same name with
// another key: that conflict was accepted when the second contact was
// pinned. A new pin with the same name is still refused.
func TestRefreshCardDespiteSameName(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	oldKey := openVault(t, "Dr. Hopper", identity.Provider)
	newKey := openVault(t, "Dr. Hopper", identity.Provider)
	if _, err := SaveContact(patient, "hopper-old", cardOf(t, oldKey), false); err != nil {
		t.Fatal(err)
	}
	if _, err := SaveContact(patient, "dr-hopper", cardOf(t, newKey), true); err != nil {
		t.Fatal(err)
	}
	id := oldKey.Owner()
	r, _ := ParseAgeRecipient(id.Recipient().String())
	fresh, err := NewCard(id, CardParams{Recipient: r, Name: id.Name(), Role: id.Role(),
		Hints: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + id.ID().String()}}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	res, err := SaveContact(patient, "hopper-old", fresh, false)
	if err != nil || res.Action != PinUpdated || len(res.SameName) != 1 {
		t.Fatalf("refresh: %+v %v; want updated, with the same-name warning", res, err)
	}
	if _, c, err := ResolveContact(patient, "hopper-old"); err != nil || len(c.Hints()) != 1 {
		t.Fatalf("stored card: %v", err)
	}
	third := openVault(t, "Dr. Hopper", identity.Provider)
	if _, err := SaveContact(patient, "hopper3", cardOf(t, third), false); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("a new pin with the same name: %v, want ErrKeyChanged", err)
	}
}

// Pinning and removing contacts are ledger entries that commit to the pin:
// a pin deleted, changed or put back outside medvault (which would let
// another key take the alias without the key-change warning) fails verify.
func TestVerifyCatchesContactTampering(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	dr := cardOf(t, openVault(t, "Dr. Hopper", identity.Provider))
	other := cardOf(t, openVault(t, "Dr. Who", identity.Provider))
	mallory := cardOf(t, openVault(t, "Dr. Hopper", identity.Provider))
	verify := func(want bool) {
		t.Helper()
		rep, err := patient.Verify(true)
		if got := errors.Is(err, vault.ErrTampered); got != want {
			t.Fatalf("verify: tampered %v, want %v (%v %v)", got, want, err, rep.Problems)
		}
	}
	if _, err := SaveContact(patient, "dr", dr, false); err != nil {
		t.Fatal(err)
	}
	if _, err := SaveContact(patient, "who", other, false); err != nil {
		t.Fatal(err)
	}
	verify(false)
	// Deleted outside medvault (no entry).
	if err := patient.DeleteObject(vault.KindContact, "dr", nil); err != nil {
		t.Fatal(err)
	}
	verify(true)
	// Put back as it was: clean again.
	if err := patient.PutObject(vault.KindContact, "dr", dr.Bytes(), nil); err != nil {
		t.Fatal(err)
	}
	verify(false)
	// Swapped for another key's card outside medvault.
	if err := patient.PutObject(vault.KindContact, "dr", mallory.Bytes(), nil); err != nil {
		t.Fatal(err)
	}
	verify(true)
	if _, err := SaveContact(patient, "dr", dr, true); err != nil { // re-pinned, logged
		t.Fatal(err)
	}
	verify(false)
	// Removed by medvault, then put back outside it.
	if err := RemoveContact(patient, "who"); err != nil {
		t.Fatal(err)
	}
	verify(false)
	if err := patient.PutObject(vault.KindContact, "who", other.Bytes(), nil); err != nil {
		t.Fatal(err)
	}
	verify(true)
}
