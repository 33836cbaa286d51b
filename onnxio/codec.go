package onnxio

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// ONNX element types that can hold filters.
const (
	Float    = int32(onnxpb.TensorProto_FLOAT)
	Float16  = int32(onnxpb.TensorProto_FLOAT16)
	BFloat16 = int32(onnxpb.TensorProto_BFLOAT16)
	Double   = int32(onnxpb.TensorProto_DOUBLE)
)

// IsFloat reports whether the element type dt is one the codec reads and writes:
// FLOAT, FLOAT16, BFLOAT16 or DOUBLE.
func IsFloat(dt int32) bool {
	return dt == Float || dt == Float16 || dt == BFloat16 || dt == Double
}

// TypeName returns the ONNX name of element type dt, such as "FLOAT16", or "type 42" for a
// number the schema does not know.
func TypeName(dt int32) string {
	if name, ok := onnxpb.TensorProto_DataType_name[dt]; ok {
		return name
	}
	return fmt.Sprintf("type %d", dt)
}

// elemSize is the number of bytes one element of type dt takes in raw_data; 0 for STRING
// and unknown types.
func elemSize(dt int32) int {
	switch onnxpb.TensorProto_DataType(dt) {
	case onnxpb.TensorProto_UINT8, onnxpb.TensorProto_INT8, onnxpb.TensorProto_BOOL:
		return 1
	case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_UINT16, onnxpb.TensorProto_INT16:
		return 2
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_INT32, onnxpb.TensorProto_UINT32:
		return 4
	case onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_COMPLEX64:
		return 8
	case onnxpb.TensorProto_COMPLEX128:
		return 16
	}
	return 0
}

// decodeRaw decodes little-endian raw bytes of float type dt into dst.
func decodeRaw(dst []float64, raw []byte, dt int32) {
	switch dt {
	case Float:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	case Float16:
		for i := range dst {
			dst[i] = Float16Value(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case BFloat16:
		for i := range dst {
			dst[i] = BFloat16Value(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case Double:
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	}
}

// encodeRaw rounds v to float type dt (to nearest, ties to even) and encodes it little-endian.
func encodeRaw(v []float64, dt int32) []byte {
	out := make([]byte, len(v)*elemSize(dt))
	switch dt {
	case Float:
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(float32(x)))
		}
	case Float16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], Float16Bits(x))
		}
	case BFloat16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], BFloat16Bits(x))
		}
	case Double:
		for i, x := range v {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(x))
		}
	}
	return out
}

// Float16Bits rounds x to IEEE 754 binary16, to nearest with ties to even, in one step from
// float64 (no double rounding through float32). Values beyond the range become ±Inf.
func Float16Bits(x float64) uint16 { return uint16(roundTo(x, 5, 10)) }

// Float16Value returns the value of the binary16 number with bits h.
func Float16Value(h uint16) float64 { return valueOf(uint64(h), 5, 10) }

// BFloat16Bits rounds x to bfloat16, to nearest with ties to even, in one step from float64.
func BFloat16Bits(x float64) uint16 { return uint16(roundTo(x, 8, 7)) }

// BFloat16Value returns the value of the bfloat16 number with bits b.
func BFloat16Value(b uint16) float64 { return valueOf(uint64(b), 8, 7) }

// roundTo rounds x to the binary format with ebits exponent bits and mbits fraction bits and
// returns the format's bit pattern.
func roundTo(x float64, ebits, mbits uint) uint64 {
	signBit := uint64(0)
	if math.Signbit(x) {
		signBit = 1 << (ebits + mbits)
	}
	expAll := uint64(1)<<ebits - 1
	switch {
	case math.IsNaN(x):
		return signBit | expAll<<mbits | 1<<(mbits-1)
	case math.IsInf(x, 0):
		return signBit | expAll<<mbits
	case x == 0:
		return signBit
	}
	ax := math.Abs(x)
	bias := int(1)<<(ebits-1) - 1
	emin := 1 - bias
	_, e2 := math.Frexp(ax) // ax = f·2^e2, f in [0.5, 1)
	e := max(e2-1, emin)    // exponent of the binade, clamped into the subnormal range
	quantum := math.Ldexp(1, e-int(mbits))
	r := uint64(math.RoundToEven(ax / quantum)) // exact: a power-of-two scaling
	if r>>mbits == 0 {                          // subnormal (or rounded to zero)
		return signBit | r
	}
	if r == 1<<(mbits+1) { // rounded up into the next binade
		r >>= 1
		e++
	}
	biased := uint64(e + bias)
	if biased >= expAll {
		return signBit | expAll<<mbits
	}
	return signBit | biased<<mbits | (r & (1<<mbits - 1))
}

// valueOf decodes a bit pattern of the binary format with ebits exponent and mbits fraction bits.
func valueOf(bits uint64, ebits, mbits uint) float64 {
	sign := 1.0
	if bits>>(ebits+mbits)&1 == 1 {
		sign = -1
	}
	expAll := uint64(1)<<ebits - 1
	exp := bits >> mbits & expAll
	frac := bits & (1<<mbits - 1)
	bias := int(1)<<(ebits-1) - 1
	switch exp {
	case 0:
		return sign * math.Ldexp(float64(frac), 1-bias-int(mbits))
	case expAll:
		if frac != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	}
	return sign * math.Ldexp(float64(frac|1<<mbits), int(exp)-bias-int(mbits))
}
