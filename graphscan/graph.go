package graphscan

import (
	"container/heap"
	"fmt"
	"slices"
	"strings"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// scope is one graph's names: what defines each value and what is known of its shape. A
// subgraph's scope has its enclosing graph's scope as parent, since ONNX subgraphs may read
// outer values.
type scope struct {
	parent   *scope
	graph    *onnxpb.GraphProto // nil for a function body
	nodes    []*onnxpb.NodeProto
	init     map[string]*onnxpb.TensorProto
	sparse   map[string]bool
	inputs   map[string]bool
	producer map[string]int        // value name -> index of the node that outputs it
	shapes   map[string][]int64    // value name -> dims, -1 where unknown
	readers  map[string][]int      // value name -> indices of nodes that read it, subgraphs included
	outputs  map[string]bool       // graph outputs
	where    string                // "" for the main graph, else a description for messages
	formal   map[string]string     // function input name -> the caller's value name
	caller   *scope                // where formal names resolve, for a function body
	fn       *onnxpb.FunctionProto // the function, for a function body
	subs     map[int][]*onnxpb.GraphProto
}

// emptyScope is a scope of nodes whose maps are ready to fill.
func emptyScope(nodes []*onnxpb.NodeProto) *scope {
	return &scope{
		nodes:    nodes,
		init:     map[string]*onnxpb.TensorProto{},
		sparse:   map[string]bool{},
		inputs:   map[string]bool{},
		producer: map[string]int{},
		shapes:   map[string][]int64{},
		readers:  map[string][]int{},
		outputs:  map[string]bool{},
		formal:   map[string]string{},
	}
}

// newGraphScope indexes graph g, whose enclosing scope is parent (nil for the main graph).
func newGraphScope(g *onnxpb.GraphProto, parent *scope, where string) (*scope, error) {
	s := emptyScope(g.GetNode())
	s.parent, s.graph, s.where = parent, g, where
	for _, t := range g.GetInitializer() {
		s.init[t.GetName()] = t
	}
	for _, vi := range g.GetInput() {
		s.inputs[vi.GetName()] = true
	}
	for _, vi := range g.GetOutput() {
		s.outputs[vi.GetName()] = true
	}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetInput(), g.GetValueInfo(), g.GetOutput()} {
		for _, vi := range list {
			if dims, ok := tensorDims(vi.GetType()); ok {
				s.shapes[vi.GetName()] = dims
			}
		}
	}
	for _, st := range g.GetSparseInitializer() {
		s.sparse[st.GetValues().GetName()] = true
		s.shapes[st.GetValues().GetName()] = st.GetDims()
	}
	if err := s.index(); err != nil {
		return nil, err
	}
	return s, nil
}

// index records producers and readers, and refuses a value defined twice.
func (s *scope) index() error {
	s.subs = map[int][]*onnxpb.GraphProto{}
	for i, n := range s.nodes {
		for _, out := range n.GetOutput() {
			if out == "" {
				continue
			}
			if j, dup := s.producer[out]; dup {
				return fmt.Errorf("%w: %snodes %s and %s both produce %q; every value must have one producer",
					ErrInvalidGraph, s.in(), label(s.nodes[j], j), label(n, i), out)
			}
			if s.init[out] != nil || s.inputs[out] {
				return fmt.Errorf("%w: %snode %s produces %q, which is already a graph input or initializer",
					ErrInvalidGraph, s.in(), label(n, i), out)
			}
			s.producer[out] = i
		}
		for _, in := range n.GetInput() {
			if in != "" {
				s.readers[in] = append(s.readers[in], i)
			}
		}
		for _, a := range n.GetAttribute() {
			subs := a.GetGraphs()
			if a.GetG() != nil {
				subs = append([]*onnxpb.GraphProto{a.GetG()}, subs...)
			}
			for _, g := range subs {
				s.subs[i] = append(s.subs[i], g)
				for _, name := range outerReads(g) {
					s.readers[name] = append(s.readers[name], i)
				}
			}
		}
	}
	return nil
}

func (s *scope) in() string {
	if s.where == "" {
		return ""
	}
	return s.where + ": "
}

// outerReads lists the names a subgraph reads without defining them, at any depth.
func outerReads(g *onnxpb.GraphProto) []string {
	defined := map[string]bool{}
	for _, t := range g.GetInitializer() {
		defined[t.GetName()] = true
	}
	for _, st := range g.GetSparseInitializer() {
		defined[st.GetValues().GetName()] = true
	}
	for _, vi := range g.GetInput() {
		defined[vi.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, out := range n.GetOutput() {
			defined[out] = true
		}
	}
	var reads []string
	seen := map[string]bool{}
	add := func(name string) {
		if name != "" && !defined[name] && !seen[name] {
			seen[name] = true
			reads = append(reads, name)
		}
	}
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			add(in)
		}
		for _, a := range n.GetAttribute() {
			for _, sub := range append([]*onnxpb.GraphProto{a.GetG()}, a.GetGraphs()...) {
				if sub != nil {
					for _, name := range outerReads(sub) {
						add(name)
					}
				}
			}
		}
	}
	for _, vi := range g.GetOutput() {
		add(vi.GetName())
	}
	return reads
}

// defined reports whether name is a value of this scope or an enclosing one.
func (s *scope) defined(name string) bool {
	for sc := s; sc != nil; sc = sc.parent {
		if sc.init[name] != nil || sc.sparse[name] || sc.inputs[name] {
			return true
		}
		if _, ok := sc.producer[name]; ok {
			return true
		}
		if _, ok := sc.formal[name]; ok {
			return true
		}
	}
	return false
}

// topoOrder sorts the scope's nodes with Kahn's algorithm, taking among the ready nodes the
// one that comes first in the file. It refuses reads of undefined values and cycles.
func (s *scope) topoOrder() ([]int, error) {
	deps := make([][]int, len(s.nodes))
	indeg := make([]int, len(s.nodes))
	for i, n := range s.nodes {
		reads := slices.Clone(n.GetInput())
		for _, g := range s.subs[i] {
			reads = append(reads, outerReads(g)...)
		}
		seen := map[int]bool{}
		for _, in := range reads {
			if in == "" {
				continue
			}
			p, ok := s.producer[in]
			if !ok {
				if !s.defined(in) {
					return nil, fmt.Errorf("%w: %snode %s reads %q, which no node, graph input or initializer provides",
						ErrInvalidGraph, s.in(), label(n, i), in)
				}
				continue
			}
			if p == i {
				return nil, fmt.Errorf("%w: %snode %s reads its own output %q", ErrInvalidGraph, s.in(), label(n, i), in)
			}
			if !seen[p] {
				seen[p] = true
				deps[p] = append(deps[p], i)
				indeg[i]++
			}
		}
	}
	ready := &intHeap{}
	for i := range s.nodes {
		if indeg[i] == 0 {
			heap.Push(ready, i)
		}
	}
	order := make([]int, 0, len(s.nodes))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		order = append(order, i)
		for _, j := range deps[i] {
			if indeg[j]--; indeg[j] == 0 {
				heap.Push(ready, j)
			}
		}
	}
	if len(order) < len(s.nodes) {
		var stuck []string
		for i := range s.nodes {
			if indeg[i] > 0 && len(stuck) < 5 {
				stuck = append(stuck, label(s.nodes[i], i))
			}
		}
		return nil, fmt.Errorf("%w: %sthe graph has a cycle; nodes on or after it: %s",
			ErrInvalidGraph, s.in(), strings.Join(stuck, ", "))
	}
	return order, nil
}

type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// tensorDims returns the dims of a tensor type, -1 for each dim whose size is not a fixed
// positive number.
func tensorDims(tp *onnxpb.TypeProto) ([]int64, bool) {
	tt := tp.GetTensorType()
	if tt == nil || tt.GetShape() == nil {
		return nil, false
	}
	dims := make([]int64, len(tt.GetShape().GetDim()))
	for i, d := range tt.GetShape().GetDim() {
		dims[i] = -1
		if v := d.GetDimValue(); v > 0 {
			dims[i] = v
		}
	}
	return dims, true
}

// attrInt returns the integer attribute name of n, or def when absent.
func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return def
}

func attrInts(n *onnxpb.NodeProto, name string) []int64 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetInts()
		}
	}
	return nil
}

func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// label names a node for messages: its name in quotes, or its op type and position when it
// has no name.
func label(n *onnxpb.NodeProto, i int) string {
	if n.GetName() != "" {
		return fmt.Sprintf("%q", n.GetName())
	}
	return fmt.Sprintf("#%d (unnamed %s)", i, n.GetOpType())
}

// isDefaultDomain reports whether a node's domain is the ONNX default one.
func isDefaultDomain(n *onnxpb.NodeProto) bool {
	return n.GetDomain() == "" || n.GetDomain() == "ai.onnx"
}
