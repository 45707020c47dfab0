package auth

import "testing"

// TestSlots checks the per-key cap of open streams: a key holds at most
// max slots, a released slot is free again (released once however often
// its func is called), keys do not share slots, and max <= 0 is no cap.
func TestSlots(t *testing.T) {
	t.Run("cap per key", func(t *testing.T) {
		s := NewSlots(2)
		r1, ok1 := s.Acquire("a")
		_, ok2 := s.Acquire("a")
		_, ok3 := s.Acquire("a")
		if !ok1 || !ok2 || ok3 {
			t.Fatalf("acquired %v %v %v, want true true false", ok1, ok2, ok3)
		}
		if _, ok := s.Acquire("b"); !ok {
			t.Fatal("another key is refused")
		}
		r1()
		r1()
		if _, ok := s.Acquire("a"); !ok {
			t.Fatal("a released slot is not free")
		}
		if _, ok := s.Acquire("a"); ok {
			t.Fatal("a release counted twice")
		}
	})
	t.Run("no cap", func(t *testing.T) {
		s := NewSlots(0)
		for range 100 {
			if _, ok := s.Acquire("a"); !ok {
				t.Fatal("refused without a cap")
			}
		}
	})
}
