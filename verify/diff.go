package verify

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// maxDifferences bounds the differences Diff reports; past it, it says how many more.
const maxDifferences = 20

// Difference is one way in which two models differ beyond what a rewrite may change.
type Difference struct {
	Path string // where: graph.node["conv"].attribute["group"].i, graph.initializer["W"] (data), ...
	What string
}

func (d Difference) String() string { return d.Path + ": " + d.What }

// TensorPair is one tensor in the original model and the rewritten one.
type TensorPair struct {
	Original, Rewritten *onnxpb.TensorProto
	Path                string
}

// Structure is what Diff found.
type Structure struct {
	Tensors     int          // tensors compared
	Changed     []TensorPair // tensors allowed to change whose data did change
	Unchanged   []TensorPair // tensors allowed to change whose data did not
	Differences []Difference // everything else that differs; empty when the rewrite is clean
	More        int          // differences beyond those listed
}

// Diff compares two models field by field. Everything must be equal, tensors' data byte for
// byte, except the data of the tensors of a in allowed, which may change (the depthwise
// weights a rewrite replaces). External data is compared by content, so the rewritten model
// may keep it in a file of another name or at other offsets.
func Diff(a, b *onnxio.Model, allowed map[*onnxpb.TensorProto]bool) (*Structure, error) {
	d := &differ{a: a, b: b, allowed: allowed, s: &Structure{}}
	d.message("model", a.Proto.ProtoReflect(), b.Proto.ProtoReflect())
	if d.err != nil {
		return nil, d.err
	}
	return d.s, nil
}

type differ struct {
	a, b    *onnxio.Model
	allowed map[*onnxpb.TensorProto]bool
	s       *Structure
	err     error
}

func (d *differ) add(path, format string, args ...any) {
	if len(d.s.Differences) >= maxDifferences {
		d.s.More++
		return
	}
	d.s.Differences = append(d.s.Differences, Difference{path, fmt.Sprintf(format, args...)})
}

var tensorName = (&onnxpb.TensorProto{}).ProtoReflect().Descriptor().FullName()

// message compares two messages of the same type; skip names fields left out.
func (d *differ) message(path string, ma, mb protoreflect.Message) {
	if d.err != nil {
		return
	}
	var skip map[protoreflect.Name]bool
	if ma.Descriptor().FullName() == tensorName {
		skip = d.tensor(path, ma.Interface().(*onnxpb.TensorProto), mb.Interface().(*onnxpb.TensorProto))
	}
	fields := ma.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if skip[fd.Name()] {
			continue
		}
		fpath := path + "." + string(fd.Name())
		hasA, hasB := ma.Has(fd), mb.Has(fd)
		switch {
		case !hasA && !hasB:
			continue
		case hasA != hasB && !fd.IsList():
			d.add(fpath, "set in only one model")
			continue
		}
		switch {
		case fd.IsList():
			la, lb := ma.Get(fd).List(), mb.Get(fd).List()
			if la.Len() != lb.Len() {
				d.add(fpath, "%d elements in the original, %d in the rewritten model%s", la.Len(), lb.Len(), onlyInOne(fd, la, lb))
				continue
			}
			for k := 0; k < la.Len(); k++ {
				epath := fpath + "[" + strconv.Itoa(k) + "]"
				if fd.Message() != nil {
					epath = fpath + elementKey(la.Get(k).Message(), k)
					d.message(epath, la.Get(k).Message(), lb.Get(k).Message())
				} else if !sameValue(la.Get(k), lb.Get(k)) {
					d.add(epath, "%v in the original, %v in the rewritten model", la.Get(k), lb.Get(k))
				}
			}
		case fd.Message() != nil:
			d.message(fpath, ma.Get(fd).Message(), mb.Get(fd).Message())
		default:
			if !sameValue(ma.Get(fd), mb.Get(fd)) {
				d.add(fpath, "%v in the original, %v in the rewritten model", ma.Get(fd), mb.Get(fd))
			}
		}
	}
	if !bytes.Equal(ma.GetUnknown(), mb.GetUnknown()) {
		d.add(path, "fields unknown to this ONNX version differ")
	}
}

// tensor compares the data of two tensors and returns the fields the generic comparison
// must leave out: the data fields it compared itself, and the external data references,
// whose content it compared.
func (d *differ) tensor(path string, ta, tb *onnxpb.TensorProto) map[protoreflect.Name]bool {
	d.s.Tensors++
	ra, err := d.a.RawData(ta)
	if err != nil {
		d.err = err
		return nil
	}
	rb, err := d.b.RawData(tb)
	if err != nil {
		d.err = err
		return nil
	}
	skip := map[protoreflect.Name]bool{}
	if ta.GetDataLocation() == onnxpb.TensorProto_EXTERNAL && tb.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		skip["external_data"] = true
	}
	pair := TensorPair{Original: ta, Rewritten: tb, Path: path}
	if d.allowed[ta] {
		for _, f := range []protoreflect.Name{"float_data", "int32_data", "double_data", "raw_data", "data_location", "external_data"} {
			skip[f] = true
		}
		same := (ra == nil) == (rb == nil) && bytes.Equal(ra, rb)
		if same && ra == nil { // both typed: compare the typed values
			va, errA := d.a.Values(ta)
			vb, errB := d.b.Values(tb)
			same = errA == nil && errB == nil && sameFloats(va, vb)
		}
		if same {
			d.s.Unchanged = append(d.s.Unchanged, pair)
		} else {
			d.s.Changed = append(d.s.Changed, pair)
		}
		return skip
	}
	switch {
	case (ra == nil) != (rb == nil):
		d.add(path, "data moved between raw_data and a typed field")
	case ra != nil && !bytes.Equal(ra, rb):
		d.add(path+" (data)", "%d of %d bytes differ; only the depthwise weights may change", countDiff(ra, rb), max(len(ra), len(rb)))
	}
	if ra != nil || rb != nil {
		skip["raw_data"] = true
		skip["data_location"] = skip["external_data"]
	}
	return skip
}

// elementKey names a list element by its name field when it has one.
func elementKey(m protoreflect.Message, k int) string {
	if name, ok := elementName(m); ok {
		return "[" + strconv.Quote(name) + "]"
	}
	return "[" + strconv.Itoa(k) + "]"
}

// opsetName is the message whose elements are named by domain rather than by name or key.
var opsetName = (&onnxpb.OperatorSetIdProto{}).ProtoReflect().Descriptor().FullName()

// elementName returns the name or key field of m (the domain of an opset import), when it
// has a non-empty one.
func elementName(m protoreflect.Message) (string, bool) {
	keys := []protoreflect.Name{"name", "key"}
	if m.Descriptor().FullName() == opsetName {
		keys = []protoreflect.Name{"domain"}
	}
	for _, field := range keys {
		if fd := m.Descriptor().Fields().ByName(field); fd != nil && m.Has(fd) && m.Get(fd).String() != "" {
			return m.Get(fd).String(), true
		}
	}
	return "", false
}

// onlyInOne names the elements of two lists of messages that only one of them has, such as
// `; only in the rewritten model: "author"`, or returns "" when the elements have no names.
func onlyInOne(fd protoreflect.FieldDescriptor, la, lb protoreflect.List) string {
	if fd.Message() == nil {
		return ""
	}
	names := func(l protoreflect.List) map[string]bool {
		set := map[string]bool{}
		for k := 0; k < l.Len(); k++ {
			if name, ok := elementName(l.Get(k).Message()); ok {
				set[name] = true
			}
		}
		return set
	}
	only := func(l protoreflect.List, other map[string]bool) []string {
		var q []string
		for k := 0; k < l.Len(); k++ {
			if name, ok := elementName(l.Get(k).Message()); ok && !other[name] {
				q = append(q, strconv.Quote(name))
			}
		}
		return q
	}
	var s string
	if q := only(la, names(lb)); len(q) > 0 {
		s += "; only in the original: " + strings.Join(q, ", ")
	}
	if q := only(lb, names(la)); len(q) > 0 {
		s += "; only in the rewritten model: " + strings.Join(q, ", ")
	}
	return s
}

func sameValue(a, b protoreflect.Value) bool {
	switch x := a.Interface().(type) {
	case []byte:
		return bytes.Equal(x, b.Bytes())
	case float32:
		return math.Float32bits(x) == math.Float32bits(float32(b.Float()))
	case float64:
		return math.Float64bits(x) == math.Float64bits(b.Float())
	}
	return a.Equal(b)
}

func sameFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return true
}

func countDiff(a, b []byte) int {
	n := max(len(a), len(b)) - min(len(a), len(b))
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}
