package covplot

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"testing"

	"golang.org/x/image/font"
	"gonum.org/v1/gonum/mat"
)

func TestBlockForm(t *testing.T) {
	t.Parallel()
	const k = 3
	r := mat.NewDense(k*k, k*k, nil)
	for p := range k * k {
		for q := range k * k {
			r.Set(p, q, float64(100*p+q))
		}
	}
	b, err := BlockForm(r, k)
	if err != nil {
		t.Fatal(err)
	}
	// B[k·i+l][k·j+m] = R[k·i+j][k·l+m] (ALGORITHM.md 1).
	for i := range k {
		for j := range k {
			for l := range k {
				for m := range k {
					if got, want := b.At(k*i+l, k*j+m), r.At(k*i+j, k*l+m); got != want {
						t.Fatalf("B[%d][%d] = %g, want R[%d][%d] = %g", k*i+l, k*j+m, got, k*i+j, k*l+m, want)
					}
				}
			}
		}
	}
	back, err := BlockForm(b, k)
	if err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(back, r) {
		t.Errorf("BlockForm twice is not the identity")
	}
	if _, err := BlockForm(mat.NewDense(8, 8, nil), 3); err == nil {
		t.Errorf("BlockForm of an 8×8 matrix for 3×3 filters: got no error")
	}
}

func TestMosaic(t *testing.T) {
	t.Parallel()
	// Five 2×3 filters whose values are 10·filter + tap, in 3 columns.
	var f []float64
	for j := range 5 {
		for tap := range 6 {
			f = append(f, float64(10*j+tap))
		}
	}
	m, err := Mosaic(f, 5, 2, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r, c := m.Dims(); r != 4 || c != 9 {
		t.Fatalf("got a %d×%d mosaic, want 4×9", r, c)
	}
	// Filter 4 is in tile row 1, column 1; its tap (1, 2) is value 45.
	if got := m.At(2+1, 3+2); got != 45 {
		t.Errorf("filter 4 tap (1, 2): got %g, want 45", got)
	}
	if got := m.At(3, 8); !math.IsNaN(got) {
		t.Errorf("the tile after the last filter: got %g, want NaN", got)
	}
	if _, err := Mosaic(f, 6, 2, 3, 3); err == nil {
		t.Errorf("Mosaic of more filters than values: got no error")
	}
}

func TestColour(t *testing.T) {
	t.Parallel()
	white := color.RGBA{255, 255, 255, 255}
	if got := Colour(0, 1); got != white {
		t.Errorf("Colour(0) = %v, want white", got)
	}
	for _, v := range []float64{0.05, 0.3, 0.7, 1, 5} {
		if c := Colour(v, 1); !(c.R > c.B) {
			t.Errorf("Colour(%g) = %v, want red above blue", v, c)
		}
		if c := Colour(-v, 1); !(c.B > c.R) {
			t.Errorf("Colour(%g) = %v, want blue above red", -v, c)
		}
	}
	// Stronger values are darker, up to the limit, and the same beyond it.
	lum := func(c color.RGBA) int { return int(c.R) + int(c.G) + int(c.B) }
	prev := lum(white)
	for _, v := range []float64{0.1, 0.3, 0.5, 0.7, 0.9, 1} {
		l := lum(Colour(v, 1))
		if l >= prev {
			t.Errorf("Colour(%g) is not darker than the one before", v)
		}
		prev = l
	}
	if Colour(2, 1) != Colour(1, 1) || Colour(-7, 2) != Colour(-2, 2) {
		t.Errorf("values beyond the limit: want the colour of the limit")
	}
	if Colour(math.NaN(), 1) != EmptyColour {
		t.Errorf("NaN: want EmptyColour")
	}
	if Colour(0.5, 0) != Colour(0.5, 1) {
		t.Errorf("limit 0: want it taken as 1")
	}
}

func TestTicks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit float64
		want  []string
	}{
		{0.5, []string{"0.5", "0.25", "0", "−0.25", "−0.5"}},
		{0.501, []string{"0.5", "0.25", "0", "−0.25", "−0.5"}},
		{0.00551, []string{"0.005", "0.0025", "0", "−0.0025", "−0.005"}},
		{0.0751, []string{"0.075", "0.05", "0.025", "0", "−0.025", "−0.05", "−0.075"}},
		{1, []string{"1", "0.5", "0", "−0.5", "−1"}},
		{3.9, []string{"3", "2", "1", "0", "−1", "−2", "−3"}},
	}
	for _, tc := range tests {
		var got []string
		for _, tk := range ticks(tc.limit) {
			got = append(got, tk.label)
			if tk.frac < 0 || tk.frac > 1 {
				t.Errorf("limit %g: tick %s at %g, outside the bar", tc.limit, tk.label, tk.frac)
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ticks(%g) = %v, want %v", tc.limit, got, tc.want)
		}
	}
}

// testFigure has panels of several sizes and kinds, with long titles.
func testFigure(shared bool) *Figure {
	sym := mat.NewDense(9, 9, nil)
	for i := range 9 {
		for j := range 9 {
			sym.Set(i, j, float64(i-j)/8) // negative above the diagonal, positive below
		}
	}
	big := mat.NewDense(81, 81, nil)
	for i := range 81 {
		big.Set(i, i, 0.5)
		if i > 0 {
			big.Set(i, i-1, -0.25)
		}
	}
	tiny := mat.NewDense(1, 1, []float64{-2})
	return &Figure{
		Title: "a figure whose heading is long enough that it has to wrap onto a second line at this width, " +
			"and perhaps a third one, to see that nothing runs into the panels below",
		Note: "a note under the heading",
		Panels: []Panel{
			{
				Title: "/model/stage.3/block.12/token_mixer/depthwise/Conv_with_a_very_long_name\n" +
					"layer 12 of 40, d = 0.282, 768 filters, 7x7",
				Data: big, BlockRows: 9, BlockCols: 9,
			},
			{Title: "small", Data: sym, BlockRows: 3, BlockCols: 3},
			{Title: "one value", Data: tiny},
			{Title: "a title with many words that wrap onto a second line and then go on well past that line's end",
				Data: sym, Limit: 10},
			{Data: mat.NewDense(3, 5, nil)},
		},
		SharedScale: shared,
		PanelSize:   160, // small, to keep the test fast under -race
	}
}

// TestLayout checks that everything lies inside the image and that nothing overlaps:
// heatmaps, colour bars and every line of text.
func TestLayout(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{false, true} {
		f := testFigure(shared)
		lay, err := f.Layout()
		if err != nil {
			t.Fatal(err)
		}
		if len(lay.Panels) != len(f.Panels) {
			t.Fatalf("got %d panel layouts, want %d", len(lay.Panels), len(f.Panels))
		}
		wantBars := len(f.Panels)
		if shared {
			wantBars = 1
		}
		if len(lay.Bars) != wantBars {
			t.Errorf("shared %v: got %d colour bars, want %d", shared, len(lay.Bars), wantBars)
		}
		type box struct {
			what string
			r    image.Rectangle
		}
		var boxes []box
		for k, pl := range lay.Panels {
			boxes = append(boxes, box{"heatmap " + f.Panels[k].Title, pl.Heatmap.Inset(-1)}) // with its frame
			if got := pl.Cell(pl.Rows-1, pl.Cols-1); got.Max != pl.Heatmap.Max {
				t.Errorf("panel %d: the last cell ends at %v, want the heatmap's corner %v",
					k, got.Max, pl.Heatmap.Max)
			}
			if len(pl.Title) > maxTitleLines {
				t.Errorf("panel %d: %d title lines, want at most %d", k, len(pl.Title), maxTitleLines)
			}
		}
		for _, b := range lay.Bars {
			tickArea := image.Rect(b.Rect.Max.X, b.Rect.Min.Y, b.Rect.Max.X+tickLength, b.Rect.Max.Y)
			boxes = append(boxes, box{"bar", b.Rect.Inset(-1).Union(tickArea)})
		}
		for _, tx := range lay.texts {
			bounds, _ := font.BoundString(tx.face.Face, tx.text)
			r := image.Rect(bounds.Min.X.Floor(), bounds.Min.Y.Floor(), bounds.Max.X.Ceil(), bounds.Max.Y.Ceil())
			r = r.Add(tx.at)
			boxes = append(boxes, box{"text " + tx.text, r})
		}
		full := image.Rectangle{Max: lay.Size}
		for i, a := range boxes {
			if !a.r.In(full) {
				t.Errorf("shared %v: %s at %v lies outside the %v image", shared, a.what, a.r, lay.Size)
			}
			for _, b := range boxes[i+1:] {
				if a.r.Overlaps(b.r) {
					t.Errorf("shared %v: %s at %v overlaps %s at %v", shared, a.what, a.r, b.what, b.r)
				}
			}
		}
	}
}

// TestDraw checks the PNG: its size, and the colour of cells whose sign is known.
func TestDraw(t *testing.T) {
	t.Parallel()
	f := testFigure(false)
	var buf bytes.Buffer
	if err := f.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("the PNG does not decode: %v", err)
	}
	lay, err := f.Layout()
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Size() != lay.Size {
		t.Fatalf("image is %v, layout says %v", img.Bounds().Size(), lay.Size)
	}
	at := func(panel, i, j int) color.RGBA {
		c := lay.Panels[panel].Cell(i, j)
		mid := image.Pt((c.Min.X+c.Max.X)/2, (c.Min.Y+c.Max.Y)/2)
		r, g, b, _ := img.At(mid.X, mid.Y).RGBA()
		return color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 255}
	}
	tests := []struct {
		panel, i, j int
		want        color.RGBA
	}{
		{0, 40, 40, Colour(0.5, 0.5)},   // the diagonal, the deepest red
		{0, 40, 39, Colour(-0.25, 0.5)}, // below it, blue
		{0, 0, 80, Colour(0, 0.5)},      // white
		{1, 8, 0, Colour(1, 1)},         // (8−0)/8
		{1, 0, 8, Colour(-1, 1)},        // (0−8)/8
		{2, 0, 0, Colour(-2, 2)},        // a lone value is its own limit
		{3, 8, 0, Colour(1, 10)},        // Limit 10: pale
		{4, 2, 4, Colour(0, 1)},         // all zeros: white, limit 1
	}
	for _, tc := range tests {
		if got := at(tc.panel, tc.i, tc.j); got != tc.want {
			t.Errorf("panel %d cell (%d, %d): got %v, want %v", tc.panel, tc.i, tc.j, got, tc.want)
		}
	}
	if c := at(0, 40, 40); !(c.R > 100 && c.B < 80) {
		t.Errorf("a positive cell is %v, want red", c)
	}
	if c := at(0, 40, 39); !(c.B > c.R) {
		t.Errorf("a negative cell is %v, want blue", c)
	}
	// The line between blocks is grey, and the bar is red at the top, blue at the bottom.
	gap := lay.Panels[0].Cell(0, 8).Max
	if r, g, b, _ := img.At(gap.X, gap.Y-1).RGBA(); uint8(r>>8) != EmptyColour.R || r != g || g != b {
		t.Errorf("the line after block column 1 is not grey")
	}
	bar := lay.Bars[0].Rect
	top, bottom := img.At(bar.Min.X+1, bar.Min.Y), img.At(bar.Min.X+1, bar.Max.Y-1)
	if r, _, b, _ := top.RGBA(); !(r > b) {
		t.Errorf("the top of the colour bar is %v, want red", top)
	}
	if r, _, b, _ := bottom.RGBA(); !(b > r) {
		t.Errorf("the bottom of the colour bar is %v, want blue", bottom)
	}
}

func TestFigureErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fig  Figure
		want string
	}{
		{"no panels", Figure{}, "at least one panel"},
		{"no data", Figure{Panels: []Panel{{Title: "x"}}}, `panel 1 ("x"): no data`},
		{"too large", Figure{Panels: []Panel{{Data: mat.NewDense(2, 2, nil)}}, PanelSize: 20000}, "too large"},
		{"too many cells", Figure{Panels: []Panel{{Data: mat.NewDense(10001, 1, nil)}}}, "too large to draw"},
	}
	for _, tc := range tests {
		_, err := tc.fig.Draw()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

func TestShorten(t *testing.T) {
	t.Parallel()
	fc := newFaces()
	long := "/model/stage.3/block.12/token_mixer/depthwise/Conv"
	s := fc.panel.shorten(long, 150)
	if !strings.Contains(s, "…") || !strings.HasPrefix(s, "/model") || !strings.HasSuffix(s, "Conv") {
		t.Errorf("shorten(%q) = %q, want its ends kept around a …", long, s)
	}
	if fc.panel.width(s) > 150 {
		t.Errorf("shorten gave %q, %d pixels wide, want at most 150", s, fc.panel.width(s))
	}
	if got := fc.panel.wrap("a\nb\nc", 200, 2); len(got) != 2 {
		t.Errorf("wrap to 2 lines: got %q", got)
	}
}
