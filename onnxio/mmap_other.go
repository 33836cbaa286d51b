//go:build !unix

package onnxio

import (
	"errors"
	"os"
)

// mapFile is not available here; Load reads the file instead.
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	return nil, nil, errors.New("memory mapping is not supported on this system")
}
