package health

import (
	"regexp"
	"regexp/syntax"
	"unicode/utf8"
)

// expectation decides a send-expect reply while it arrives: it passes as
// soon as the anchored expression matches the bytes received so far, and
// fails as soon as no continuation of them could match, so a "554" banner
// fails at once against "220" or `2\d\d` instead of waiting for the
// timeout. As with any streaming match, `$` and `\b` may match at the
// end of what has arrived so far. An expectation is immutable and shared by
// the checks of all targets; each reply gets its own state from newReply.
type expectation struct {
	re *regexp.Regexp
	// prog is re's program, for the early-failure test; nil when re is not
	// anchored at the start (it then never fails early).
	prog *syntax.Prog
}

// newExpectation prepares re, which config anchors as `^(?:expect)`.
func newExpectation(re *regexp.Regexp) *expectation {
	e := &expectation{re: re}
	// regexp compiles the same way: Parse with Perl flags, Simplify, Compile.
	s, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return e
	}
	prog, err := syntax.Compile(s.Simplify())
	if err != nil || prog.StartCond()&syntax.EmptyBeginText == 0 {
		return e
	}
	e.prog = prog
	return e
}

// reply is the decision state of one reply; a nil *reply passes on the
// first byte. Not safe for concurrent use.
type reply struct {
	e *expectation
	// The NFA is kept between calls, so the early-failure test costs one
	// pass over a reply however many reads it takes: pending are the
	// instructions to continue from at offset pos, reached after rune prev
	// (-1 at the start).
	pending, cur []uint32
	pos          int
	prev         rune
	dead         bool  // no thread left: no continuation can match
	matched      bool  // a thread reached the match
	seen         []int // seen[pc] == gen: pc already visited in this step
	gen          int
}

// newReply starts deciding one reply; nil e gives a nil *reply.
func (e *expectation) newReply() *reply {
	if e == nil {
		return nil
	}
	r := &reply{e: e, prev: -1}
	if p := e.prog; p != nil {
		n := len(p.Inst)
		r.pending = append(make([]uint32, 0, n), uint32(p.Start))
		r.cur = make([]uint32, 0, n)
		r.seen = make([]int, n)
	}
	return r
}

// decide reports whether b, the reply received so far, passes and whether
// that is final. Each call's b must extend the previous one.
func (r *reply) decide(b []byte) (ok, decided bool) {
	if r == nil {
		return len(b) > 0, len(b) > 0
	}
	if r.e.re.Match(b) {
		return true, true
	}
	if r.e.prog != nil && !r.viable(b) {
		return false, true
	}
	return false, false
}

// viable reports whether some continuation of b (b itself included) could
// match the program from the start. It runs the program as an NFA over the
// bytes not yet seen (Thompson simulation, as in regexp's pike VM) and
// says yes while a thread survives. Where the next rune is unknown — at
// the end of b or before an incomplete UTF-8 sequence — every empty-width
// assertion a next rune could satisfy is assumed satisfied, so the answer
// errs only towards "viable".
func (r *reply) viable(b []byte) bool {
	prog := r.e.prog
	for !r.dead && r.pos < len(b) && utf8.FullRune(b[r.pos:]) {
		c, w := utf8.DecodeRune(b[r.pos:])
		r.closure(syntax.EmptyOpContext(r.prev, c))
		r.gen++
		r.pending = r.pending[:0]
		for _, pc := range r.cur {
			inst := &prog.Inst[pc]
			r.matched = r.matched || inst.Op == syntax.InstMatch
			if matchRune(inst, c) && r.seen[inst.Out] != r.gen {
				r.seen[inst.Out] = r.gen
				r.pending = append(r.pending, inst.Out)
			}
		}
		r.dead = len(r.pending) == 0
		r.prev, r.pos = c, r.pos+w
	}
	if r.matched || r.dead {
		return r.matched
	}
	r.closure(syntax.EmptyOpContext(r.prev, -1) | syntax.EmptyOpContext(r.prev, '\n') |
		syntax.EmptyOpContext(r.prev, 'a') | syntax.EmptyOpContext(r.prev, ' '))
	return len(r.cur) > 0
}

// closure sets cur to the rune-consuming and match instructions reachable
// from pending without consuming input, under the empty-width conditions
// cond.
func (r *reply) closure(cond syntax.EmptyOp) {
	r.gen++
	r.cur = r.cur[:0]
	for _, pc := range r.pending {
		r.add(pc, cond)
	}
}

func (r *reply) add(pc uint32, cond syntax.EmptyOp) {
	if r.seen[pc] == r.gen {
		return
	}
	r.seen[pc] = r.gen
	inst := &r.e.prog.Inst[pc]
	switch inst.Op {
	case syntax.InstAlt, syntax.InstAltMatch:
		r.add(inst.Out, cond)
		r.add(inst.Arg, cond)
	case syntax.InstCapture, syntax.InstNop:
		r.add(inst.Out, cond)
	case syntax.InstEmptyWidth:
		if syntax.EmptyOp(inst.Arg)&^cond == 0 {
			r.add(inst.Out, cond)
		}
	case syntax.InstFail:
	default: // InstMatch and the InstRune family
		r.cur = append(r.cur, pc)
	}
}

// matchRune reports whether a rune-consuming instruction accepts r.
func matchRune(inst *syntax.Inst, r rune) bool {
	switch inst.Op {
	case syntax.InstRune:
		return inst.MatchRune(r)
	case syntax.InstRune1:
		return r == inst.Rune[0]
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}
