package onnxio

import (
	"cmp"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// An edit replaces the bytes [start, end) of the original encoding with data. The records
// in path enclose it; their length prefixes are rewritten when the edit changes a length.
type edit struct {
	path       []frame
	start, end int64
	data       []byte
}

// A spliceNode is one enclosing record with the edits and records below it.
type spliceNode struct {
	fr      frame
	kids    []*spliceNode
	byStart map[int64]*spliceNode // kids by the start of their record
	edits   []edit
	newLen  int64 // payload length after the edits
}

// splice is a plan to write the original encoding src with edits applied. Bytes outside the
// edits are copied as they are, length prefixes included, unless an edit below changed the
// length; so a model without edits comes out byte for byte as it came in.
type splice struct {
	src  []byte
	root *spliceNode
}

func newSplice(src []byte, edits []edit) (*splice, error) {
	root := &spliceNode{fr: frame{0, 0, 0, int64(len(src))}}
	for _, e := range edits {
		n := root
		for _, fr := range e.path {
			// A map, not a scan of the kids: a graph can hold millions of tensors.
			child := n.byStart[fr.start]
			if child == nil {
				child = &spliceNode{fr: fr}
				n.kids = append(n.kids, child)
				if n.byStart == nil {
					n.byStart = map[int64]*spliceNode{}
				}
				n.byStart[fr.start] = child
			}
			n = child
		}
		if e.start < n.fr.payload || e.end > n.fr.end || e.start > e.end {
			return nil, fmt.Errorf("onnxio: internal error: edit [%d,%d) outside its record [%d,%d)", e.start, e.end, n.fr.payload, n.fr.end)
		}
		n.edits = append(n.edits, e)
	}
	if err := root.plan(); err != nil {
		return nil, err
	}
	return &splice{src: src, root: root}, nil
}

// plan sorts the children, checks that nothing overlaps, and computes new lengths bottom up.
func (n *spliceNode) plan() error {
	slices.SortFunc(n.kids, func(a, b *spliceNode) int { return cmp.Compare(a.fr.start, b.fr.start) })
	slices.SortFunc(n.edits, func(a, b edit) int { return cmp.Compare(a.start, b.start) })
	n.newLen = n.fr.end - n.fr.payload
	prev := n.fr.payload
	ki, ei := 0, 0
	for ki < len(n.kids) || ei < len(n.edits) {
		if ei < len(n.edits) && (ki == len(n.kids) || n.edits[ei].start < n.kids[ki].fr.start) {
			e := n.edits[ei]
			if e.start < prev {
				return fmt.Errorf("onnxio: internal error: overlapping edits at byte %d", e.start)
			}
			n.newLen += int64(len(e.data)) - (e.end - e.start)
			prev = e.end
			ei++
			continue
		}
		k := n.kids[ki]
		if k.fr.start < prev {
			return fmt.Errorf("onnxio: internal error: overlapping records at byte %d", k.fr.start)
		}
		if err := k.plan(); err != nil {
			return err
		}
		n.newLen += k.recordLen() - (k.fr.end - k.fr.start)
		prev = k.fr.end
		ki++
	}
	return nil
}

// recordLen is the record's encoded length after the edits, tag and length prefix included.
func (n *spliceNode) recordLen() int64 {
	header := n.fr.payload - n.fr.lenAt
	if n.newLen != n.fr.end-n.fr.payload {
		header = int64(protowire.SizeVarint(uint64(n.newLen)))
	}
	return (n.fr.lenAt - n.fr.start) + header + n.newLen
}

// size is the length of the spliced encoding.
func (s *splice) size() int64 { return s.root.newLen }

// A sink receives a spliced encoding: new bytes through Write, and stretches of the
// original encoding through copyOriginal, which a file sink can copy without reading them.
type sink interface {
	io.Writer
	copyOriginal(from, to int64) error
}

// writeTo writes the spliced encoding to w.
func (s *splice) writeTo(w io.Writer) error {
	return s.write(memSink{w, s.src}, s.root)
}

// memSink writes original bytes from memory.
type memSink struct {
	io.Writer
	src []byte
}

func (m memSink) copyOriginal(from, to int64) error {
	_, err := m.Write(m.src[from:to])
	return err
}

func (s *splice) write(w sink, n *spliceNode) error {
	pos := n.fr.payload
	ki, ei := 0, 0
	for ki < len(n.kids) || ei < len(n.edits) {
		if ei < len(n.edits) && (ki == len(n.kids) || n.edits[ei].start < n.kids[ki].fr.start) {
			e := n.edits[ei]
			if err := w.copyOriginal(pos, e.start); err != nil {
				return err
			}
			if _, err := w.Write(e.data); err != nil {
				return err
			}
			pos = e.end
			ei++
			continue
		}
		k := n.kids[ki]
		if err := w.copyOriginal(pos, k.fr.lenAt); err != nil {
			return err
		}
		if k.newLen == k.fr.end-k.fr.payload {
			if err := w.copyOriginal(k.fr.lenAt, k.fr.payload); err != nil {
				return err
			}
		} else if _, err := w.Write(protowire.AppendVarint(nil, uint64(k.newLen))); err != nil {
			return err
		}
		if err := s.write(w, k); err != nil {
			return err
		}
		pos = k.fr.end
		ki++
	}
	return w.copyOriginal(pos, n.fr.end)
}

// bytes returns the spliced encoding in memory.
func (s *splice) bytes() []byte {
	buf := &sliceWriter{b: make([]byte, 0, s.size())}
	_ = s.writeTo(buf) // a sliceWriter never fails
	return buf.b
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
