package health

import (
	"regexp"
	"testing"
)

// anchored compiles expr the way config builds Check.ExpectRE.
func anchored(expr string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + expr + `)`) }

func TestExpectationDecide(t *testing.T) {
	tests := []struct {
		expr, reply string
		ok, decided bool
	}{
		// Literal prefixes.
		{"220", "220 ok\r\n", true, true},
		{"220", "2", false, false},
		{"220", "22", false, false},
		{"220", "220", true, true},
		{"220", "554 go away\r\n", false, true},
		{"220", "5", false, true},
		{"220", "21", false, true},
		{"220", " 220", false, true}, // anchored at the start
		// Regular expressions.
		{`2\d\d `, "250 ok", true, true},
		{`2\d\d `, "25", false, false},
		{`2\d\d `, "2x", false, true},
		{`2\d\d `, "554 go away", false, true},
		{`(220|250) `, "25", false, false},
		{`(220|250) `, "254", false, true},
		{`(?i)\+ok`, "+O", false, false},
		{`(?i)\+ok`, "+Ok ready", true, true},
		{`(?i)\+ok`, "-ERR", false, true},
		{`SSH-2\.0-`, "SSH-1.99-x", false, true},
		{`[^5]`, "5", false, true},
		{`.*ESMTP`, "220-mx.example.org", false, false},
		{`.*ESMTP`, "220-mx.example.org\r\n", false, true}, // `.` stops at the line end
		{`(?s).*ESMTP`, "220-mx\r\n220 ESMTP ready", true, true},
		// Empty-width assertions: mid-reply they are exact, at the end open.
		{`220$`, "220", true, true},     // `$` is the end of what arrived
		{`220$`, "220 ok", false, true}, // cannot end after "220" any more
		{`ok\b`, "okay", false, true},
		{`ok\B`, "ok", false, false}, // "oka..." would match
		{`a^b`, "a", false, true},    // `^` is the start of text: never again
		{`a$b`, "a", false, false},   // never matches, but errs towards viable
		{`a$b`, "ab", false, true},
		// UTF-8: an incomplete rune is undecided.
		{"é", "\xc3", false, false},
		{"é", "\xc3\xa9", true, true},
		{"é", "e", false, true},
	}
	for _, tt := range tests {
		e := newExpectation(anchored(tt.expr))
		ok, decided := e.newReply().decide([]byte(tt.reply))
		if ok != tt.ok || decided != tt.decided {
			t.Errorf("expect %q, reply %q: ok %v decided %v, want %v %v",
				tt.expr, tt.reply, ok, decided, tt.ok, tt.decided)
		}
	}
}

func TestExpectationNil(t *testing.T) {
	var e *expectation
	if ok, decided := e.newReply().decide(nil); ok || decided {
		t.Errorf("no expectation, no bytes: %v %v, want undecided", ok, decided)
	}
	if ok, decided := e.newReply().decide([]byte("x")); !ok || !decided {
		t.Errorf("no expectation, one byte: %v %v, want a pass", ok, decided)
	}
}

// An unanchored expression cannot be ruled out by a prefix: it never fails
// early.
func TestExpectationUnanchored(t *testing.T) {
	e := newExpectation(regexp.MustCompile("220"))
	if e.prog != nil {
		t.Fatal("unanchored expression got an early-failure program")
	}
	if ok, decided := e.newReply().decide([]byte("554 ")); ok || decided {
		t.Errorf("unanchored: %v %v, want undecided", ok, decided)
	}
}

// Fed a byte at a time, a reply is decided as when it arrives whole.
func TestExpectationIncremental(t *testing.T) {
	for _, tt := range []struct{ expr, reply string }{
		{"220", "220 ok\r\n"},
		{"220", "554 go away\r\n"},
		{`(220|250) `, "250 ok"},
		{`(220|250) `, "254 no"},
		{`ok\B`, "okay"},
		{`(?m)^b`, "a\nb"},
		{`.*ESMTP`, "220-mx\r\n"},
		{"é!", "\xc3\xa9!"},
	} {
		e := newExpectation(anchored(tt.expr))
		wantOK, wantDecided := e.newReply().decide([]byte(tt.reply))
		r := e.newReply()
		var ok, decided bool
		for i := 1; i <= len(tt.reply) && !decided; i++ {
			ok, decided = r.decide([]byte(tt.reply[:i]))
		}
		if ok != wantOK || decided != wantDecided {
			t.Errorf("expect %q, reply %q byte by byte: %v %v, whole: %v %v",
				tt.expr, tt.reply, ok, decided, wantOK, wantDecided)
		}
	}
}

// FuzzExpectation checks that early failure is never wrong: when some
// continuation of a reply matches, the reply is not declared failed, whether
// it arrives whole or in two reads.
func FuzzExpectation(f *testing.F) {
	for _, s := range [][3]string{
		{"220", "2", "20 ok"},
		{`2\d\d `, "25", "0 "},
		{`ok\B`, "ok", "ay"},
		{`(?m)a$`, "a", "\nb"},
		{`\bx`, "", "x"},
		{`(?i)straße`, "STRASS", "E"},
		{"é", "\xc3", "\xa9"},
		{`[^a]*b`, "\xff\xfe", "b"},
	} {
		f.Add(s[0], s[1], s[2], uint8(len(s[1])/2))
	}
	f.Fuzz(func(t *testing.T, expr, reply, more string, split uint8) {
		re, err := regexp.Compile(`^(?:` + expr + `)`)
		if err != nil || len(expr) > 64 || len(reply) > 256 {
			return
		}
		e := newExpectation(re)
		if e.prog == nil || len(e.prog.Inst) > 500 {
			return // (?:a*a*a*a*){999} takes regexp itself seconds
		}
		ok, decided := e.newReply().decide([]byte(reply))
		if ok != re.MatchString(reply) {
			t.Fatalf("expect %q, reply %q: ok %v, regexp says %v", expr, reply, ok, !ok)
		}
		if decided && !ok && re.MatchString(reply+more) {
			t.Fatalf("expect %q: reply %q declared failed, but %q matches", expr, reply, reply+more)
		}
		r := e.newReply()
		k := int(split) % (len(reply) + 1)
		if _, d := r.decide([]byte(reply[:k])); !d {
			if ok2, d2 := r.decide([]byte(reply)); ok2 != ok || d2 != decided {
				t.Fatalf("expect %q, reply %q split at %d: %v %v, whole: %v %v", expr, reply, k, ok2, d2, ok, decided)
			}
		}
	})
}
