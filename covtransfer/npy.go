package covtransfer

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The bank is a zip of .npy files, the layout numpy.savez writes and numpy.load reads. The
// few array kinds a bank holds (1-D and 2-D little-endian float64 and int64, 1-D uint8) are
// encoded and decoded here: npyio v0.14.0 writes an empty array as a 0-d array without data,
// which numpy cannot load, and its header reader panics on a truncated header, while a bank
// must hold empty arrays and must never panic on a damaged file.

// npyArray is one array of a bank: its numpy dtype, shape and elements.
type npyArray struct {
	descr string // "<f8", "<i8" or "|u1"
	shape []int
	f64   []float64
	i64   []int64
	u8    []byte
}

// maxHeader bounds the header of an .npy entry; numpy's own are a few dozen bytes.
const maxHeader = 1 << 16

// maxElements bounds one array of a bank (1 GiB of float64), so that a damaged archive that
// declares a huge entry cannot make Load allocate without limit. The largest array of a real
// bank, one layer's filters, is far smaller: 10⁵ filters of 49 taps are 5·10⁶ values.
const maxElements = 1 << 27

// writeNpy writes a in the .npy format, version 1.0, with the header padded to a multiple
// of 64 bytes as numpy pads it.
func writeNpy(w io.Writer, a npyArray) error {
	dims := make([]string, len(a.shape))
	for i, d := range a.shape {
		dims[i] = strconv.Itoa(d)
	}
	shape := "(" + strings.Join(dims, ", ") + ")"
	if len(a.shape) == 1 {
		shape = "(" + dims[0] + ",)"
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", a.descr, shape)
	// magic (6) + version (2) + length (2) + dict + padding + "\n" is a multiple of 64.
	pad := 63 - (10+len(dict))%64
	header := dict + strings.Repeat(" ", pad) + "\n"

	var buf bytes.Buffer
	buf.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&buf, binary.LittleEndian, uint16(len(header)))
	buf.WriteString(header)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	switch a.descr {
	case "<f8":
		return writeWords(w, len(a.f64), func(i int) uint64 { return math.Float64bits(a.f64[i]) })
	case "<i8":
		return writeWords(w, len(a.i64), func(i int) uint64 { return uint64(a.i64[i]) })
	case "|u1":
		_, err := w.Write(a.u8)
		return err
	}
	return fmt.Errorf("dtype %q is not one a bank holds", a.descr)
}

// writeWords writes n little-endian 8-byte words in chunks.
func writeWords(w io.Writer, n int, word func(int) uint64) error {
	buf := make([]byte, 0, 8*min(n, 4096))
	for i := range n {
		buf = binary.LittleEndian.AppendUint64(buf, word(i))
		if len(buf) == cap(buf) {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return err
}

// npzWriter writes the entries of a bank into a zip archive.
type npzWriter struct {
	z *zip.Writer
}

func (w *npzWriter) write(name string, a npyArray) error {
	// A zero modification time keeps the archive's bytes a function of its content.
	f, err := w.z.CreateHeader(&zip.FileHeader{Name: name + ".npy", Method: zip.Deflate})
	if err != nil {
		return err
	}
	if err := writeNpy(f, a); err != nil {
		return fmt.Errorf("entry %s: %w", name, err)
	}
	return nil
}

// npzReader reads the entries of a bank from a zip archive.
type npzReader struct {
	files map[string]*zip.File
}

func newNpzReader(r io.ReaderAt, size int64) (*npzReader, error) {
	z, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("not an .npz (zip) file: %w", err)
	}
	nr := &npzReader{files: map[string]*zip.File{}}
	for _, f := range z.File {
		nr.files[strings.TrimSuffix(f.Name, ".npy")] = f
	}
	return nr, nil
}

func (r *npzReader) has(name string) bool { return r.files[name] != nil }

// errEntry marks a missing or malformed entry.
var errEntry = errors.New("malformed entry")

// read reads entry name, which must have dtype descr; shape is checked by the caller. The
// element count the header declares is checked against the entry's size before anything is
// allocated.
func (r *npzReader) read(name, descr string) (npyArray, error) {
	f := r.files[name]
	if f == nil {
		return npyArray{}, fmt.Errorf("entry %q is missing: %w", name, errEntry)
	}
	rc, err := f.Open()
	if err != nil {
		return npyArray{}, fmt.Errorf("entry %q: %w", name, err)
	}
	defer rc.Close()
	a, err := readNpy(rc, f.UncompressedSize64, descr)
	if err != nil {
		return npyArray{}, fmt.Errorf("entry %q: %w", name, err)
	}
	return a, nil
}

// readNpy decodes one .npy stream of at most size bytes whose dtype must be descr.
func readNpy(r io.Reader, size uint64, descr string) (npyArray, error) {
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil {
		return npyArray{}, fmt.Errorf("%w: short header", errEntry)
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return npyArray{}, fmt.Errorf("%w: not an .npy array", errEntry)
	}
	var hlen uint64
	switch pre[6] {
	case 1:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return npyArray{}, fmt.Errorf("%w: short header", errEntry)
		}
		hlen = uint64(binary.LittleEndian.Uint16(pre[8:10]))
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return npyArray{}, fmt.Errorf("%w: short header", errEntry)
		}
		hlen = uint64(binary.LittleEndian.Uint32(l[:]))
	default:
		return npyArray{}, fmt.Errorf("%w: .npy version %d.%d is not known", errEntry, pre[6], pre[7])
	}
	if hlen > maxHeader || hlen > size {
		return npyArray{}, fmt.Errorf("%w: header of %d bytes", errEntry, hlen)
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return npyArray{}, fmt.Errorf("%w: short header", errEntry)
	}
	a, err := parseHeader(string(hdr))
	if err != nil {
		return npyArray{}, err
	}
	if a.descr != descr {
		return npyArray{}, fmt.Errorf("%w: dtype %s, want %s", errEntry, a.descr, descr)
	}

	// The element count must fit in what the entry holds.
	n := uint64(1)
	for _, d := range a.shape {
		if d < 0 || (d > 0 && n > size/uint64(d)) {
			return npyArray{}, fmt.Errorf("%w: shape %v is larger than the entry", errEntry, a.shape)
		}
		n *= uint64(d)
	}
	width := uint64(8)
	if descr == "|u1" {
		width = 1
	}
	if n > size/width {
		return npyArray{}, fmt.Errorf("%w: shape %v is larger than the entry", errEntry, a.shape)
	}
	if n > maxElements {
		return npyArray{}, fmt.Errorf("%w: shape %v has more than %d elements", errEntry, a.shape, maxElements)
	}
	// Read what is there before trusting the size: memory grows with the data, not with
	// what a damaged header or archive declares.
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(r, int64(n*width))); err != nil || uint64(buf.Len()) != n*width {
		return npyArray{}, fmt.Errorf("%w: data of shape %v is truncated", errEntry, a.shape)
	}
	data := buf.Bytes()
	switch descr {
	case "<f8":
		a.f64 = make([]float64, n)
		for i := range a.f64 {
			a.f64[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))
		}
	case "<i8":
		a.i64 = make([]int64, n)
		for i := range a.i64 {
			a.i64[i] = int64(binary.LittleEndian.Uint64(data[8*i:]))
		}
	default:
		a.u8 = data
	}
	return a, nil
}

// parseHeader reads the Python dict literal of an .npy header, such as
// {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }, in any key order.
func parseHeader(h string) (npyArray, error) {
	bad := fmt.Errorf("%w: header %q is not a numpy array header", errEntry, strings.TrimSpace(h))
	h = strings.TrimSpace(h)
	if !strings.HasPrefix(h, "{") || !strings.HasSuffix(h, "}") {
		return npyArray{}, bad
	}
	h = h[1 : len(h)-1]
	var a npyArray
	seen := map[string]bool{}
	for h = strings.TrimSpace(h); h != ""; h = strings.TrimSpace(h) {
		key, rest, ok := quoted(h)
		if !ok {
			return npyArray{}, bad
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, ":") {
			return npyArray{}, bad
		}
		rest = strings.TrimSpace(rest[1:])
		switch key {
		case "descr":
			v, r, ok := quoted(rest)
			if !ok {
				return npyArray{}, bad
			}
			// numpy writes '|u1' for bytes; '<u1' and 'u1' mean the same.
			if v == "<u1" || v == "u1" {
				v = "|u1"
			}
			a.descr, rest = v, r
		case "fortran_order":
			switch {
			case strings.HasPrefix(rest, "False"):
				rest = rest[len("False"):]
			case strings.HasPrefix(rest, "True"):
				return npyArray{}, fmt.Errorf("%w: Fortran-order arrays are not read; save with numpy.ascontiguousarray",
					errEntry)
			default:
				return npyArray{}, bad
			}
		case "shape":
			end := strings.IndexByte(rest, ')')
			if !strings.HasPrefix(rest, "(") || end < 0 {
				return npyArray{}, bad
			}
			a.shape = []int{}
			for _, tok := range strings.Split(rest[1:end], ",") {
				tok = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(tok), "L"))
				if tok == "" {
					continue
				}
				d, err := strconv.Atoi(tok)
				if err != nil || d < 0 {
					return npyArray{}, bad
				}
				a.shape = append(a.shape, d)
			}
			rest = rest[end+1:]
		default:
			return npyArray{}, bad
		}
		seen[key] = true
		rest = strings.TrimSpace(rest)
		if rest != "" {
			if !strings.HasPrefix(rest, ",") {
				return npyArray{}, bad
			}
			rest = rest[1:]
		}
		h = rest
	}
	if !seen["descr"] || !seen["shape"] {
		return npyArray{}, bad
	}
	return a, nil
}

// quoted splits a leading Python string literal in single or double quotes from s.
func quoted(s string) (string, string, bool) {
	if s == "" || (s[0] != '\'' && s[0] != '"') {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", "", false
	}
	return s[1 : 1+end], s[2+end:], true
}
