package onnxio

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Errors that callers can test for with errors.Is.
var (
	// ErrMalformed means the bytes are not a valid protobuf encoding of an ONNX model.
	ErrMalformed = errors.New("not a valid ONNX protobuf")
	// ErrTensorData means a tensor's stored data does not match its type and dims.
	ErrTensorData = errors.New("inconsistent tensor data")
	// ErrExternalData means an external data reference was refused or cannot be read.
	ErrExternalData = errors.New("external data refused")
)

// Model is an ONNX model decoded for rewriting. It keeps the bytes it was read from, so that
// Save writes every byte it was not asked to change exactly as it was.
type Model struct {
	// Proto is the decoded model. The raw_data of its tensors is left out of the decoding so
	// that memory stays near one copy of the file: read and write tensor elements with
	// Values and SetValues. Everything else is decoded; treat it as read-only, since Save
	// writes the original bytes, not Proto.
	Proto *onnxpb.ModelProto

	path    string // the file the model was loaded from; "" when decoded from memory
	dir     string // the folder external data locations are relative to
	src     []byte
	order   []*onnxpb.TensorProto
	locs    map[*onnxpb.TensorProto]*tensorLoc
	ext     map[*onnxpb.TensorProto]*extRef
	changes map[*onnxpb.TensorProto][]byte // new elements, encoded little-endian in the tensor's type

	file  *os.File     // the model file, open while src maps it; nil when decoded from memory
	unmap func() error // releases src
}

// Load reads and decodes the ONNX model in the file at path. External data locations are
// resolved relative to the file's folder and checked before anything else is read: a
// location that is absolute, has a ".." component, leads through a symbolic link out of the
// folder, names a missing file, or has an offset and length past the file's end is refused.
func Load(path string) (m *Model, err error) {
	// A device or a pipe could be read forever, and opening a pipe waits for a writer:
	// only regular files are models. The check is repeated on the open file, which is
	// what is read.
	fi, err := os.Stat(path)
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is %s, not a model file; give the path of an .onnx file", path, fileKind(fi.Mode()))
	}
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, cmp.Or(err, fmt.Errorf("%s is not a regular file; give the path of an .onnx file", path))
	}

	// Map the file where the system can, else read it.
	src, unmap, mapErr := mapFile(f, fi.Size())
	if mapErr != nil {
		if src, err = io.ReadAll(f); err != nil {
			f.Close()
			return nil, err
		}
		unmap = func() error { return nil }
	}
	defer func() {
		if err != nil {
			unmap()
			f.Close()
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guardFault(&err, path)
	m, err = decode(src, path, filepath.Dir(path))
	if errors.Is(err, ErrMalformed) {
		return nil, fmt.Errorf("%s: %w; it is not an ONNX model, or it was damaged or cut short: export or copy it again", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.file, m.unmap = f, unmap
	return m, nil
}

// Close releases the file the model was loaded from. Afterwards the model, and every slice
// RawData returned, must not be used. A model decoded from memory has nothing to release.
func (m *Model) Close() error {
	if m.file == nil {
		return nil
	}
	err := m.unmap()
	if cerr := m.file.Close(); err == nil {
		err = cerr
	}
	m.file, m.unmap, m.src = nil, nil, nil
	return err
}

// guardFault turns a fault while reading a mapped model file into an error: the file was
// cut short by another program while this one read it. It must be deferred by the function
// that reads the mapping, and it sets that goroutine to panic on such faults meanwhile.
func guardFault(err *error, path string) {
	if r := recover(); r != nil {
		// debug.SetPanicOnFault's panics carry the faulting address.
		if re, ok := r.(interface {
			runtime.Error
			Addr() uintptr
		}); ok {
			*err = fmt.Errorf("%s changed while it was being read (%v); do not modify a model while convcov-onnx works on it", path, re)
			return
		}
		panic(r)
	}
}

// fileKind names a kind of file that is not a regular one, for messages.
func fileKind(mode os.FileMode) string {
	switch {
	case mode.IsDir():
		return "a folder"
	case mode&os.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&os.ModeSocket != 0:
		return "a socket"
	case mode&os.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// Decode decodes an ONNX model from memory. A model decoded this way cannot read external
// data (Values fails for such tensors) and Save cannot patch it in place.
func Decode(src []byte) (*Model, error) {
	return decode(src, "", "")
}

func decode(src []byte, path, dir string) (*Model, error) {
	if len(src) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrMalformed)
	}
	locs, err := index(src)
	if err != nil {
		return nil, err
	}

	// Decode a skeleton of the model: the same bytes without any raw_data record.
	var edits []edit
	for _, l := range locs {
		for _, f := range l.fields {
			if f.num == fieldRawData && f.typ == protowire.BytesType {
				edits = append(edits, edit{path: l.path, start: f.start, end: f.end})
			}
		}
	}
	skeleton := src
	if len(edits) > 0 {
		s, err := newSplice(src, edits)
		if err != nil {
			return nil, err
		}
		skeleton = s.bytes()
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(skeleton, mp); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if mp.Graph == nil {
		// Protobuf takes unknown fields and fields of the wrong wire type as unknown, so
		// text and other files can decode without error; a model always has a graph.
		return nil, fmt.Errorf("%w: no graph (ModelProto field 7)", ErrMalformed)
	}

	m := &Model{
		Proto:   mp,
		path:    path,
		dir:     dir,
		src:     src,
		locs:    make(map[*onnxpb.TensorProto]*tensorLoc, len(locs)),
		ext:     map[*onnxpb.TensorProto]*extRef{},
		changes: map[*onnxpb.TensorProto][]byte{},
	}
	root := mp.ProtoReflect()
	for _, l := range locs {
		msg, err := resolve(root, l.addr)
		if err != nil {
			return nil, fmt.Errorf("onnxio: internal error: locating a tensor: %v", err)
		}
		t, ok := msg.Interface().(*onnxpb.TensorProto)
		if !ok {
			return nil, fmt.Errorf("onnxio: internal error: %s is not a tensor", msg.Descriptor().FullName())
		}
		m.locs[t] = l
		m.order = append(m.order, t)
	}
	if err := m.checkExternal(); err != nil {
		return nil, err
	}
	return m, nil
}

// Path returns the file the model was loaded from, or "" if it was decoded from memory.
func (m *Model) Path() string { return m.path }

// Size returns the length of the encoded model in bytes, without external data.
func (m *Model) Size() int64 { return int64(len(m.src)) }

// Tensors returns every TensorProto of the model in file order: initializers, Constant
// values and other attribute tensors, at any depth.
func (m *Model) Tensors() []*onnxpb.TensorProto { return m.order }

// HasExternalData reports whether any tensor of the model keeps its data in another file.
func (m *Model) HasExternalData() bool { return len(m.ext) > 0 }

// Changed reports whether SetValues replaced the elements of t.
func (m *Model) Changed(t *onnxpb.TensorProto) bool {
	_, ok := m.changes[t]
	return ok
}

// Storage names where the elements of t are kept: "raw_data", "float_data", "int32_data",
// "double_data" or "external". It is "" for a tensor that is not part of m.
func (m *Model) Storage(t *onnxpb.TensorProto) string {
	loc, ok := m.locs[t]
	if !ok {
		return ""
	}
	if m.ext[t] != nil {
		return "external"
	}
	if _, ok := loc.raw(); ok {
		return "raw_data"
	}
	switch t.GetDataType() {
	case Float:
		return "float_data"
	case Double:
		return "double_data"
	}
	return "int32_data"
}

// Len returns the number of elements the dims of t describe, with an error for negative
// dims or a product that overflows.
func Len(t *onnxpb.TensorProto) (int64, error) {
	n := int64(1)
	for _, d := range t.GetDims() {
		if d < 0 {
			return 0, fmt.Errorf("%w: tensor %q: negative dim in %v", ErrTensorData, t.GetName(), t.GetDims())
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("%w: tensor %q: dims %v overflow", ErrTensorData, t.GetName(), t.GetDims())
		}
		n *= d
	}
	return n, nil
}

// byteLen is the number of bytes t's elements take as raw data.
func byteLen(t *onnxpb.TensorProto) (int64, error) {
	n, err := Len(t)
	if err != nil {
		return 0, err
	}
	size := int64(elemSize(t.GetDataType()))
	if size > 0 && n > math.MaxInt64/size {
		return 0, fmt.Errorf("%w: tensor %q: dims %v overflow", ErrTensorData, t.GetName(), t.GetDims())
	}
	return n * size, nil
}

// Values returns the elements of a float tensor (FLOAT, FLOAT16, BFLOAT16 or DOUBLE) of m
// as float64, from raw_data, the typed field or external data, whichever holds them, or the
// elements SetValues gave it.
func (m *Model) Values(t *onnxpb.TensorProto) (_ []float64, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guardFault(&err, m.path)
	raw, err := m.rawBytes(t)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		out := make([]float64, len(raw)/elemSize(t.GetDataType()))
		decodeRaw(out, raw, t.GetDataType())
		return out, nil
	}
	switch t.GetDataType() {
	case Float:
		out := make([]float64, len(t.GetFloatData()))
		for i, x := range t.GetFloatData() {
			out[i] = float64(x)
		}
		return out, nil
	case Double:
		return append([]float64(nil), t.GetDoubleData()...), nil
	case Float16, BFloat16:
		out := make([]float64, len(t.GetInt32Data()))
		for i, x := range t.GetInt32Data() {
			if t.GetDataType() == Float16 {
				out[i] = Float16Value(uint16(x))
			} else {
				out[i] = BFloat16Value(uint16(x))
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("onnxio: internal error: tensor %q of type %s", t.GetName(), TypeName(t.GetDataType()))
}

// Check reports whether the stored data of the float tensor t of m agrees with its type
// and dims, without reading it: raw_data of the right length, a typed field with the right
// number of elements, or an external byte range of the right length inside its file. A
// tensor that passes can be read with Values (unless its external file cannot be read) and
// its element count is bounded by the bytes that store it, so a small file that declares a
// huge tensor is refused here, before anything is allocated for it.
func (m *Model) Check(t *onnxpb.TensorProto) error {
	_, err := m.checkData(t)
	return err
}

// checkData is Check; it returns the number of bytes t's elements take as raw data.
func (m *Model) checkData(t *onnxpb.TensorProto) (int64, error) {
	loc, ok := m.locs[t]
	if !ok {
		return 0, fmt.Errorf("onnxio: tensor %q is not part of this model", t.GetName())
	}
	dt := t.GetDataType()
	if !IsFloat(dt) {
		return 0, fmt.Errorf("%w: tensor %q: element type %s cannot hold filters (want FLOAT, FLOAT16, BFLOAT16 or DOUBLE)",
			ErrTensorData, t.GetName(), TypeName(dt))
	}
	n, err := Len(t)
	if err != nil {
		return 0, err
	}
	want, err := byteLen(t)
	if err != nil {
		return 0, err
	}
	if _, ok := m.changes[t]; ok {
		return want, nil
	}
	typed := typedLen(t)
	rawSpan, hasRaw := loc.raw()
	ext := m.ext[t]
	switch {
	case ext != nil && (hasRaw || typed > 0):
		return 0, fmt.Errorf("%w: tensor %q: external data and inline data are both set; %s",
			ErrTensorData, t.GetName(), reexport)
	case hasRaw && typed > 0:
		return 0, fmt.Errorf("%w: tensor %q: raw_data and %s are both set; %s",
			ErrTensorData, t.GetName(), m.typedField(t), reexport)
	case ext != nil:
		if ext.length >= 0 && ext.length != want {
			return 0, fmt.Errorf("%w: tensor %q: external data length is %d bytes, but dims %v of %s need %d; %s",
				ErrTensorData, t.GetName(), ext.length, t.GetDims(), TypeName(dt), want, reexport)
		}
		if ext.file != "" && (ext.offset+want > ext.size || ext.offset+want < ext.offset) {
			return 0, fmt.Errorf("%w: tensor %q: %d bytes at offset %d run past the end of %s (%d bytes); %s",
				ErrExternalData, t.GetName(), want, ext.offset, ext.location, ext.size, reexport)
		}
	case hasRaw:
		if got := rawSpan.end - rawSpan.payload; got != want {
			return 0, fmt.Errorf("%w: tensor %q: raw_data holds %d bytes, but dims %v of %s need %d; %s",
				ErrTensorData, t.GetName(), got, t.GetDims(), TypeName(dt), want, reexport)
		}
	case typed != n:
		return 0, fmt.Errorf("%w: tensor %q: %s holds %d elements, but dims %v need %d; %s",
			ErrTensorData, t.GetName(), m.typedField(t), typed, t.GetDims(), n, reexport)
	}
	return want, nil
}

// reexport is what a user can do about a tensor whose stored data is inconsistent.
const reexport = "the model is damaged: export it again"

// rawBytes checks t's data (see Check) and returns its elements' bytes when they are kept
// as raw bytes (raw_data, external data or a change); it returns nil when they are in the
// typed field.
func (m *Model) rawBytes(t *onnxpb.TensorProto) ([]byte, error) {
	want, err := m.checkData(t)
	if err != nil {
		return nil, err
	}
	if c, ok := m.changes[t]; ok {
		return c, nil
	}
	if ext := m.ext[t]; ext != nil {
		return m.readExternal(t, ext, want)
	}
	if r, ok := m.locs[t].raw(); ok {
		return m.src[r.payload:r.end], nil
	}
	return nil, nil
}

// RawData returns the bytes of t's elements when they are kept as raw bytes: its raw_data,
// its external data (read from the file), or the encoding of the values SetValues gave it.
// It returns nil, and no error, when t keeps its elements in a typed field. Unlike Values it
// works for tensors of any element type and does not check the length against the dims.
func (m *Model) RawData(t *onnxpb.TensorProto) ([]byte, error) {
	loc, ok := m.locs[t]
	if !ok {
		return nil, fmt.Errorf("onnxio: tensor %q is not part of this model", t.GetName())
	}
	if c, ok := m.changes[t]; ok {
		return c, nil
	}
	if ref := m.ext[t]; ref != nil {
		want := ref.length
		if want < 0 {
			var err error
			if want, err = byteLen(t); err != nil {
				return nil, err
			}
		}
		return m.readExternal(t, ref, want)
	}
	if r, ok := loc.raw(); ok {
		return m.src[r.payload:r.end], nil
	}
	return nil, nil
}

// typedLen is the number of elements in the typed field that t's type uses.
func typedLen(t *onnxpb.TensorProto) int64 {
	switch t.GetDataType() {
	case Float:
		return int64(len(t.GetFloatData()))
	case Double:
		return int64(len(t.GetDoubleData()))
	case Float16, BFloat16:
		return int64(len(t.GetInt32Data()))
	}
	return 0
}

func (m *Model) typedField(t *onnxpb.TensorProto) string {
	switch t.GetDataType() {
	case Float:
		return "float_data"
	case Double:
		return "double_data"
	}
	return "int32_data"
}

// SetValues replaces the elements of the float tensor t of m. Each value is rounded to the
// tensor's own type (to nearest, ties to even); the tensor keeps its dims, type, name and
// storage (raw_data, typed field or external data). Nothing is written until Save.
func (m *Model) SetValues(t *onnxpb.TensorProto, v []float64) error {
	if _, err := m.checkData(t); err != nil { // the stored data must be sound before it is replaced
		return err
	}
	n, _ := Len(t)
	if int64(len(v)) != n {
		return fmt.Errorf("onnxio: tensor %q: got %d values for dims %v (%d elements)", t.GetName(), len(v), t.GetDims(), n)
	}
	m.changes[t] = encodeRaw(v, t.GetDataType())
	return nil
}

// Discard drops the change SetValues made to t, if any: t has its stored elements again.
func (m *Model) Discard(t *onnxpb.TensorProto) { delete(m.changes, t) }

// edits returns the edits that write the changed inline tensors into the encoding.
func (m *Model) inlineEdits() []edit {
	var edits []edit
	for _, t := range m.order {
		raw, ok := m.changes[t]
		if !ok || m.ext[t] != nil {
			continue
		}
		loc := m.locs[t]
		if r, ok := loc.raw(); ok {
			edits = append(edits, edit{path: loc.path, start: r.payload, end: r.end, data: raw})
			continue
		}
		edits = append(edits, replaceRecords(loc, typedNumber(t.GetDataType()), typedRecord(t.GetDataType(), raw))...)
	}
	return edits
}

func typedNumber(dt int32) protowire.Number {
	switch dt {
	case Float:
		return fieldFloatData
	case Double:
		return fieldDoubleData
	}
	return fieldInt32Data
}

// typedRecord encodes little-endian elements of type dt as one packed record of the typed
// field that type uses.
func typedRecord(dt int32, raw []byte) []byte {
	payload := raw // float_data and double_data pack as little-endian fixed-width values
	if dt == Float16 || dt == BFloat16 {
		payload = make([]byte, 0, len(raw)*3/2)
		for i := 0; i+1 < len(raw); i += 2 {
			payload = protowire.AppendVarint(payload, uint64(raw[i])|uint64(raw[i+1])<<8)
		}
	}
	rec := protowire.AppendTag(nil, typedNumber(dt), protowire.BytesType)
	return protowire.AppendBytes(rec, payload)
}

// replaceRecords returns edits that put rec where the first record of field num is and
// delete the field's other records, leaving every other field of the tensor as it was.
func replaceRecords(loc *tensorLoc, num protowire.Number, rec []byte) []edit {
	var edits []edit
	for i, r := range loc.records(num) {
		e := edit{path: loc.path, start: r.start, end: r.end}
		if i == 0 {
			e.data = rec
		}
		edits = append(edits, e)
	}
	return edits
}
