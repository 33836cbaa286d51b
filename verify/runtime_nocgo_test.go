//go:build !cgo

package verify

import (
	"errors"
	"strings"
	"testing"
)

func TestOpenWithoutCgo(t *testing.T) {
	r, err := Open(Options{})
	if !errors.Is(err, ErrNoRuntime) || !strings.Contains(err.Error(), "without cgo") {
		t.Fatalf("Open() = %v, %v; want an error wrapping ErrNoRuntime that says cgo is missing", r, err)
	}
	var zero Runtime
	if _, err := zero.Run("model.onnx", nil); !errors.Is(err, ErrNoRuntime) {
		t.Errorf("Run() error = %v, want one wrapping ErrNoRuntime", err)
	}
}
