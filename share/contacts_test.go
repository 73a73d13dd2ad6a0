package share

import (
	"errors"
	"testing"
	"time"

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
