package balance

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// DefaultLoadRating is load_rating's default: open connections per unit
// weight, counting the one about to be added, so that an idle heavy node
// still ranks by its weight.
const DefaultLoadRating = "(active + 1) / weight"

// LoadRating is a compiled load_rating expression (expr-lang/expr). The
// expression is a number computed from one node's metrics; min-load sends a
// new connection to the candidate with the lowest. The variables are:
//
//	active        open connections through the node (stats.Node.Active)
//	weight        the candidate's weight: the summed weight of the slots it fills
//	conn_rate     recent new connections per second (stats.Node.ConnRate)
//	traffic_rate  recent bytes per second, both directions (stats.Node.TrafficRate)
//	connect_ms    moving average of connect times in ms (stats.Node.ConnectMS)
//	failures      failed dials since start (stats.Node.Failures)
//	total         connections that reached the node since start (stats.Node.Total)
//
// active, weight, failures and total are integers, the others floats; "/" is
// always float division, so (active + 1) / weight is 0.5 for active 0 and
// weight 2. The result must be a number; a NaN or an evaluation error (such
// as an integer modulo by zero) rates the node +Inf, never preferred.
//
// A LoadRating is immutable and safe for concurrent use.
type LoadRating struct {
	src  string
	prog *vm.Program
	// isDefault marks DefaultLoadRating, which min-load computes in
	// integer arithmetic without running the program.
	isDefault bool
	// reads holds the variables the expression reads: min-load loads only
	// those, and re-evaluates a node's rating only when one of them changed.
	reads ratingVars
}

// ratingVars is a set of load_rating variables.
type ratingVars uint8

const (
	readsActive ratingVars = 1 << iota
	readsConnRate
	readsTrafficRate
	readsConnectMS
	readsFailures
	readsTotal
)

var varNames = map[string]ratingVars{
	"active": readsActive, "conn_rate": readsConnRate, "traffic_rate": readsTrafficRate,
	"connect_ms": readsConnectMS, "failures": readsFailures, "total": readsTotal,
}

// ratingEnv is one node's metrics as the expression sees them.
type ratingEnv struct {
	Active      int     `expr:"active"`
	Weight      int     `expr:"weight"`
	ConnRate    float64 `expr:"conn_rate"`
	TrafficRate float64 `expr:"traffic_rate"`
	ConnectMS   float64 `expr:"connect_ms"`
	Failures    int     `expr:"failures"`
	Total       int     `expr:"total"`
}

// RatingError is a load_rating that does not compile. Line and Column
// (1-based; 0 when the error has no position, e.g. a non-numeric result)
// point into Expr.
type RatingError struct {
	Expr         string
	Line, Column int
	Msg          string
	err          error
}

func (e *RatingError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("load_rating %q: %s", e.Expr, e.Msg)
	}
	return fmt.Sprintf("load_rating %q: line %d, column %d: %s", e.Expr, e.Line, e.Column, e.Msg)
}

// Unwrap returns expr's own error (a *file.Error when it has a position).
func (e *RatingError) Unwrap() error { return e.err }

// CompileLoadRating compiles a load_rating expression once, for New (via
// Params.LoadRating) and for the config check, which reports a bad
// expression with its position (a *RatingError). "" compiles
// DefaultLoadRating.
func CompileLoadRating(src string) (*LoadRating, error) {
	if strings.TrimSpace(src) == "" {
		src = DefaultLoadRating
	}
	prog, err := expr.Compile(src, expr.Env(ratingEnv{}), expr.AsFloat64())
	if err != nil {
		re := &RatingError{Expr: src, Msg: err.Error(), err: err}
		var fe *file.Error
		if errors.As(err, &fe) {
			re.Msg = fe.Message
			if fe.Line > 0 {
				re.Line, re.Column = fe.Line, fe.Column+1
			}
		}
		return nil, re
	}
	l := &LoadRating{
		src:       src,
		prog:      prog,
		isDefault: strings.Join(strings.Fields(src), "") == "(active+1)/weight",
	}
	node := prog.Node()
	ast.Walk(&node, varCollector{&l.reads})
	return l, nil
}

// String returns the expression's source.
func (l *LoadRating) String() string { return l.src }

type varCollector struct{ reads *ratingVars }

func (v varCollector) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok {
		*v.reads |= varNames[id.Value]
	}
}

// evalState is a reusable VM and environment: pooled, so that evaluating
// allocates only what expr itself boxes.
type evalState struct {
	vm  vm.VM
	env ratingEnv
}

var evalPool = sync.Pool{New: func() any { return new(evalState) }}

// eval rates one node; see LoadRating for NaN and errors.
func (l *LoadRating) eval(env *ratingEnv) float64 {
	st := evalPool.Get().(*evalState)
	st.env = *env
	out, err := st.vm.Run(l.prog, &st.env)
	evalPool.Put(st)
	f, ok := out.(float64)
	if err != nil || !ok || math.IsNaN(f) {
		return math.Inf(1)
	}
	return f
}
