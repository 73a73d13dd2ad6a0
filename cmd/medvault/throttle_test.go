package main

import (
	"testing"
	"time"
)

// A stranger's refused push is noted at most once a minute, and the next
// note says how many were held back.
func TestThrottle(t *testing.T) {
	var th throttle
	t0 := time.Unix(1e9, 0)
	if missed, ok := th.allow(t0); !ok || missed != 0 {
		t.Fatalf("first note: %d, %v", missed, ok)
	}
	for i := 1; i <= 5; i++ {
		if _, ok := th.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("note %d within the minute was let through", i)
		}
	}
	missed, ok := th.allow(t0.Add(time.Minute))
	if !ok || missed != 5 {
		t.Fatalf("after a minute: %d held back, %v; want 5, true", missed, ok)
	}
	if got := missedNote(5); got != " (5 more pushes refused since the last note, not shown)" {
		t.Errorf("missedNote(5) = %q", got)
	}
	if got := missedNote(1); got != " (1 more push refused since the last note, not shown)" {
		t.Errorf("missedNote(1) = %q", got)
	}
}

// A flood that stops within the window is still told, once, when the
// window ends.
func TestThrottleReportsHeldBack(t *testing.T) {
	got := make(chan int, 4)
	th := &throttle{window: 50 * time.Millisecond, report: func(n int) { got <- n }}
	now := time.Now()
	if _, ok := th.allow(now); !ok {
		t.Fatal("first note held back")
	}
	for range 3 {
		if _, ok := th.allow(time.Now()); ok {
			t.Fatal("a note within the window was let through")
		}
	}
	select {
	case n := <-got:
		if n != 3 {
			t.Fatalf("reported %d held back, want 3", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held-back notes were never reported")
	}
	select {
	case n := <-got:
		t.Fatalf("reported again: %d", n)
	case <-time.After(150 * time.Millisecond):
	}
	// Once the node stops, nothing held back is reported.
	th.allow(time.Now())
	th.allow(time.Now())
	th.stop()
	select {
	case n := <-got:
		t.Fatalf("reported %d after stop", n)
	case <-time.After(150 * time.Millisecond):
	}
	var none *throttle
	none.stop()
}
