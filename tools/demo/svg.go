package demo

import (
	"fmt"
	"io"
	"strings"

	"github.com/redbandit/redbandit/tools/simulate"
)

// WriteSVG draws the learning curve: the rolling click rate of each policy
// against the number of visits.
func WriteSVG(w io.Writer, title string, curve []simulate.Point) error {
	const (
		width, height          = 820, 440
		left, right, top, bott = 70, 150, 50, 60
	)
	pw, ph := float64(width-left-right), float64(height-top-bott)
	maxVisit, maxCTR := 1, 0.0
	for _, p := range curve {
		maxVisit = max(maxVisit, p.Visit)
		for _, v := range p.CTR {
			maxCTR = max(maxCTR, v)
		}
	}
	maxCTR = float64(int(maxCTR*10)+1) / 10 // round up to a tenth
	x := func(v int) float64 { return left + pw*float64(v)/float64(maxVisit) }
	y := func(c float64) float64 { return top + ph*(1-c/maxCTR) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="28" font-size="16" font-weight="bold">%s</text>`+"\n", left, escape(title))
	for i := 0; i <= 5; i++ { // horizontal grid and CTR labels
		c := maxCTR * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, left+pw, y(c), y(c))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.2f</text>`+"\n", left-8, y(c)+4, c)
	}
	for i := 0; i <= 4; i++ { // visit labels
		v := maxVisit * i / 4
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(v), height-bott+20, v)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">visits</text>`+"\n", left+pw/2, height-15)
	fmt.Fprintf(&b, `<text x="18" y="%.1f" transform="rotate(-90 18 %.1f)" text-anchor="middle">click rate (rolling)</text>`+"\n", top+ph/2, top+ph/2)
	colors := map[string]string{simulate.Oracle: "#2b8a3e", simulate.LinUCB: "#1c7ed6", simulate.Random: "#e8590c"}
	for i, pol := range []string{simulate.Oracle, simulate.LinUCB, simulate.Random} {
		var pts []string
		for _, p := range curve {
			if v, ok := p.CTR[pol]; ok {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Visit), y(v)))
			}
		}
		if len(pts) == 0 {
			continue
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[pol], strings.Join(pts, " "))
		ly := top + 20 + 22*i
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", left+pw+15, left+pw+40, ly, ly, colors[pol])
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", left+pw+46, ly+4, pol)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
