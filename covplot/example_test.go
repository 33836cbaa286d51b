package covplot_test

import (
	"bytes"
	"fmt"
	"image/png"
	"log"
	"math"

	"github.com/convcov/convcov-onnx/covplot"
	"github.com/convcov/convcov-onnx/inject"
)

func Example() {
	// The closed-form covariance of 9×9 filters at σ = π/2 (the paper's Fig. 5), projected
	// to PSD as inject samples it, in block form.
	p, err := inject.NewCache().ClosedForm([]int{9, 9}, math.Pi/2)
	if err != nil {
		log.Fatal(err)
	}
	b, err := covplot.BlockForm(p.Cov, 9)
	if err != nil {
		log.Fatal(err)
	}
	fig := &covplot.Figure{
		Title:  "closed-form covariance, kernel 9x9, σ = π/2",
		Panels: []covplot.Panel{{Title: "block form", Data: b, BlockRows: 9, BlockCols: 9}},
	}

	// Write the PNG (to a file in a real program) and find the centre tap's variance in it.
	var buf bytes.Buffer
	if err := fig.Encode(&buf); err != nil {
		log.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		log.Fatal(err)
	}
	lay, err := fig.Layout()
	if err != nil {
		log.Fatal(err)
	}
	panel := lay.Panels[0]
	cell := panel.Cell(40, 40) // B[9·4+4][9·4+4] = R[40][40], the centre tap's variance
	r, g, bl, _ := img.At(cell.Min.X, cell.Min.Y).RGBA()
	fmt.Printf("%d×%d pixels, %d panel of %d×%d cells of %d pixels\n",
		lay.Size.X, lay.Size.Y, len(lay.Panels), panel.Rows, panel.Cols, panel.CellSize)
	fmt.Printf("centre variance %.3f, colour scale ±%.3f, drawn as rgb(%d, %d, %d)\n",
		b.At(40, 40), panel.Limit, r>>8, g>>8, bl>>8)
	// Output:
	// 600×432 pixels, 1 panel of 81×81 cells of 4 pixels
	// centre variance 0.503, colour scale ±0.503, drawn as rgb(135, 20, 32)
}
