package covplot

import (
	"errors"
	"fmt"
	"image"
	"math"

	"gonum.org/v1/gonum/mat"
)

// DefaultPanelSize is the side, in pixels, that a heatmap gets when Figure.PanelSize is 0.
const DefaultPanelSize = 300

// maxPixels bounds the image a figure may make (about 400 MB of RGBA).
const maxPixels = 100_000_000

// Panel is one heatmap of a figure.
type Panel struct {
	// Title is set above the heatmap in at most three lines: a "\n" breaks the line, and a
	// line too long for the panel is wrapped at spaces or shortened in the middle with "…".
	// Every panel leaves room for the longest title of the figure.
	Title string
	// Data is drawn cell by cell, row 0 at the top, column 0 at the left.
	Data mat.Matrix
	// BlockRows and BlockCols, when positive, put a thin grey line after every BlockRows
	// rows and every BlockCols columns: the k×k blocks of a block form, or the filters of a
	// mosaic.
	BlockRows, BlockCols int
	// BlockGap is the width of those lines in pixels; 0 means 1, or 2 for cells of 8
	// pixels or more.
	BlockGap int
	// Limit sets the colour scale to ±Limit; 0 means the largest |value| of Data (1 when
	// every value is 0 or NaN). It is ignored when the figure's scale is shared.
	Limit float64
}

// Figure is a titled grid of panels, drawn left to right and top to bottom.
type Figure struct {
	Title string // the heading, wrapped to the figure's width; none when ""
	Note  string // smaller text under the heading, wrapped likewise; none when ""
	// Panels are the heatmaps; a figure needs at least one.
	Panels []Panel
	// Columns is the number of panels per row; 0 chooses up to 4, more for many panels,
	// so that the grid stays near square.
	Columns int
	// PanelSize is the side of a heatmap in pixels (cells are whole pixels, so it comes
	// out near, not exactly at, this size); 0 means DefaultPanelSize.
	PanelSize int
	// SharedScale gives every panel the same colour scale, ±(the largest of the panels'
	// limits), and draws one colour bar for the figure instead of one per panel.
	SharedScale bool
}

// Layout is where a figure's parts lie in its image.
type Layout struct {
	Size   image.Point   // the image's width and height
	Panels []PanelLayout // one per panel, in order
	Bars   []Bar         // one per panel, or one for a shared scale

	texts []placedText
}

// PanelLayout is where one panel lies.
type PanelLayout struct {
	Heatmap   image.Rectangle // the cells and the lines between blocks
	Title     []string        // the title's lines as drawn
	Rows      int             // the matrix's rows
	Cols      int             // and columns
	CellSize  int             // side of a cell in pixels
	BlockRows int             // the panel's BlockRows and BlockCols
	BlockCols int
	Gap       int     // width of the lines between blocks
	Limit     float64 // the colour scale is ±Limit
}

// Cell returns the pixels of the matrix entry (i, j).
func (p PanelLayout) Cell(i, j int) image.Rectangle {
	x := p.Heatmap.Min.X + j*p.CellSize
	y := p.Heatmap.Min.Y + i*p.CellSize
	if p.BlockCols > 0 {
		x += (j / p.BlockCols) * p.Gap
	}
	if p.BlockRows > 0 {
		y += (i / p.BlockRows) * p.Gap
	}
	return image.Rect(x, y, x+p.CellSize, y+p.CellSize)
}

// Bar is a colour bar: +Limit at the top, −Limit at the bottom, 0 in the middle, with
// ticks at round values.
type Bar struct {
	Rect  image.Rectangle
	Limit float64
}

// Spacing, in pixels.
const (
	margin     = 20
	hgap       = 30 // between panel slots
	vgap       = 22
	titleGap   = 4  // between a panel's title and its heatmap
	headerGap  = 14 // between the figure's heading and the grid
	barGap     = 10 // between a heatmap and its colour bar
	barWidth   = 14
	tickLength = 4
	labelGap   = 3 // between a tick and its label
	minWidth   = 600

	maxTitleLines = 3
)

// Layout computes where everything goes without drawing.
func (f *Figure) Layout() (*Layout, error) {
	if len(f.Panels) == 0 {
		return nil, errors.New("covplot: a figure needs at least one panel")
	}
	fc := newFaces()
	size := f.PanelSize
	if size <= 0 {
		size = DefaultPanelSize
	}
	n := len(f.Panels)
	cols := f.Columns
	if cols <= 0 {
		cols = max(min(n, 4), int(math.Ceil(math.Sqrt(float64(n)))))
	}
	cols = min(cols, n)
	gridRows := (n + cols - 1) / cols

	// Each heatmap's cells, and the largest heatmap, which sets the size of every slot.
	lay := &Layout{}
	var maxW, maxH int
	shared := 0.0
	for k, p := range f.Panels {
		pl, err := panelCells(p, size)
		if err != nil {
			return nil, fmt.Errorf("covplot: panel %d (%q): %w", k+1, p.Title, err)
		}
		lay.Panels = append(lay.Panels, pl)
		maxW, maxH = max(maxW, pl.Heatmap.Dx()), max(maxH, pl.Heatmap.Dy())
		shared = max(shared, pl.Limit)
	}
	if f.SharedScale {
		for k := range lay.Panels {
			lay.Panels[k].Limit = shared
		}
	}

	// The colour bars' labels are as wide as the widest of them.
	labelW := 0
	for _, pl := range lay.Panels {
		for _, t := range ticks(pl.Limit) {
			labelW = max(labelW, fc.tick.width(t.label))
		}
	}
	barSpan := barGap + barWidth + tickLength + labelGap + labelW
	slotW := maxW
	if !f.SharedScale {
		slotW += barSpan
	}
	// Titles take up to maxTitleLines lines; every slot leaves room for the longest.
	titleLineH := fc.panel.lineHeight()
	titleLines := 0
	for k := range lay.Panels {
		lay.Panels[k].Title = fc.panel.wrap(f.Panels[k].Title, slotW, maxTitleLines)
		titleLines = max(titleLines, len(lay.Panels[k].Title))
	}
	titleH := titleLines*titleLineH + titleGap
	slotH := titleH + maxH
	gridW := cols*slotW + (cols-1)*hgap
	width := margin + gridW + margin
	if f.SharedScale {
		width += barSpan + hgap/2
	}
	width = max(width, minWidth) // room for the heading beside a lone panel

	// The heading, wrapped to the figure's width.
	y := margin
	for _, h := range []struct {
		text string
		fc   *face
	}{{f.Title, fc.title}, {f.Note, fc.note}} {
		if h.text == "" {
			continue
		}
		for _, line := range h.fc.wrap(h.text, width-2*margin, 0) {
			lay.texts = append(lay.texts, placedText{line, h.fc, image.Pt(margin, y+h.fc.ascent())})
			y += h.fc.lineHeight()
		}
		y += 2
	}
	if y > margin {
		y += headerGap
	}
	gridTop := y

	// The slots.
	for k := range lay.Panels {
		pl := &lay.Panels[k]
		x0 := margin + (k%cols)*(slotW+hgap)
		y0 := gridTop + (k/cols)*(slotH+vgap)
		for i, line := range pl.Title {
			at := image.Pt(x0, y0+i*titleLineH+fc.panel.ascent())
			lay.texts = append(lay.texts, placedText{line, fc.panel, at})
		}
		pl.Heatmap = pl.Heatmap.Add(image.Pt(x0, y0+titleH))
		if !f.SharedScale {
			r := pl.Heatmap
			lay.addBar(fc, image.Rect(r.Max.X+barGap, r.Min.Y, r.Max.X+barGap+barWidth, r.Max.Y), pl.Limit)
		}
	}
	if f.SharedScale {
		x := margin + gridW + hgap/2 + barGap
		top := gridTop + titleH
		lay.addBar(fc, image.Rect(x, top, x+barWidth, top+maxH), shared)
	}

	lay.Size = image.Pt(width, gridTop+gridRows*slotH+(gridRows-1)*vgap+margin)
	if lay.Size.X*lay.Size.Y > maxPixels || lay.Size.X > 30000 || lay.Size.Y > 30000 {
		return nil, fmt.Errorf("covplot: the figure would be %d×%d pixels, too large; "+
			"use fewer panels or a smaller PanelSize", lay.Size.X, lay.Size.Y)
	}
	return lay, nil
}

// panelCells sizes a panel's heatmap, at the origin, and finds its colour limit.
func panelCells(p Panel, size int) (PanelLayout, error) {
	if p.Data == nil {
		return PanelLayout{}, errors.New("no data")
	}
	rows, cols := p.Data.Dims()
	if rows < 1 || cols < 1 {
		return PanelLayout{}, fmt.Errorf("empty %d×%d matrix", rows, cols)
	}
	if rows > 10000 || cols > 10000 {
		return PanelLayout{}, fmt.Errorf("a %d×%d matrix is too large to draw", rows, cols)
	}
	pl := PanelLayout{Rows: rows, Cols: cols, BlockRows: max(p.BlockRows, 0), BlockCols: max(p.BlockCols, 0)}
	lines := func(n, block int) int {
		if block <= 0 {
			return 0
		}
		return (n+block-1)/block - 1
	}
	gapsR, gapsC := lines(rows, pl.BlockRows), lines(cols, pl.BlockCols)
	gap := max(p.BlockGap, 1)
	long := max(rows, cols)
	pl.CellSize = max(1, int(math.Round(float64(size-gap*max(gapsR, gapsC))/float64(long))))
	if p.BlockGap <= 0 && pl.CellSize >= 8 {
		gap = 2
	}
	pl.Gap = gap
	pl.Heatmap = image.Rect(0, 0, cols*pl.CellSize+gapsC*gap, rows*pl.CellSize+gapsR*gap)

	pl.Limit = p.Limit
	if !(pl.Limit > 0) || math.IsInf(pl.Limit, 0) {
		pl.Limit = 0
		for i := range rows {
			for j := range cols {
				if v := math.Abs(p.Data.At(i, j)); v > pl.Limit && !math.IsInf(v, 0) {
					pl.Limit = v
				}
			}
		}
		if pl.Limit == 0 {
			pl.Limit = 1
		}
	}
	return pl, nil
}

// addBar places a colour bar and its tick labels.
func (l *Layout) addBar(fc *faces, r image.Rectangle, limit float64) {
	l.Bars = append(l.Bars, Bar{Rect: r, Limit: limit})
	for _, t := range ticks(limit) {
		y := barY(r, t.frac)
		at := image.Pt(r.Max.X+tickLength+labelGap, y+fc.tick.ascent()/2-1)
		l.texts = append(l.texts, placedText{t.label, fc.tick, at})
	}
}

// barY is the pixel row of the fraction f of a bar, 0 at the bottom and 1 at the top.
func barY(r image.Rectangle, f float64) int {
	return r.Max.Y - 1 - int(math.Round(f*float64(r.Dy()-1)))
}

type tick struct {
	frac  float64 // 0 at −limit, 1 at +limit
	label string
}

// ticks are the labelled values of a colour bar: 0 and the multiples of a round step (1,
// 2, 2.5 or 5 times a power of ten, at most half the limit) up to ±limit.
func ticks(limit float64) []tick {
	step := math.Pow(10, math.Floor(math.Log10(limit/2)))
	for _, m := range []float64{5, 2.5, 2} {
		if m*step <= limit/2*(1+1e-9) {
			step *= m
			break
		}
	}
	n := int(math.Floor(limit/step*(1+1e-9) + 1e-9))
	var ts []tick
	for k := n; k >= -n; k-- {
		v := float64(k) * step
		ts = append(ts, tick{min(1, max(0, (v/limit+1)/2)), formatTick(v)})
	}
	return ts
}
