package joiner

import (
	"container/heap"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/training/decision"
	"github.com/redbandit/redbandit/training/event"
)

// Dead-letter reasons (the "reason" header).
const (
	ReasonUnknown     = "unknown-decision" // no decision with the reward's event id within the reward wait
	ReasonLate        = "late-reward"      // the decision's reward wait had ended
	ReasonDuplicate   = "duplicate-reward" // the product of the decision was already rewarded
	ReasonNotInSlate  = "not-in-slate"     // the product was not shown in the decision
	ReasonUndecodable = "undecodable"      // not a decision, reward or tick
	ReasonDupDecision = "duplicate-decision"
)

// output is what processing one record yields: a feedback event, or a
// dead letter of a decision-log record.
type output struct {
	ev     *event.Event // a feedback event, or nil
	dead   *kgo.Record  // the record dead-lettered
	reason string
	detail string
}

// checkpoint is what a partition's transactional offset commit carries: the
// committed offset itself is Start, the offset of the earliest record whose
// state is still needed (a decision in its wait or remembered for late
// rewards, or a reward waiting for its decision); Next is the offset from
// which processing produces output (the records before it were handled by
// committed transactions) and Clock is the partition's time just before
// the record at Start, so that replaying from Start rebuilds the same state.
type checkpoint struct {
	Start int64 `json:"start"`
	Next  int64 `json:"next"`
	Clock int64 `json:"clock"`
}

// entry is a decision or a reward waiting for its decision, in a
// partition's state.
type entry struct {
	offset      int64
	clockBefore int64
	gone        bool

	// a decision
	d        *decision.Decision
	ts       int64
	rewarded map[string]bool
	deepest  int32 // the deepest position with a positive reward
	expired  bool  // its wait has ended: zeros emitted, kept for late rewards

	// a reward waiting for its decision
	reward *decision.Reward
	rec    *kgo.Record
}

// deadline is a timer of an entry: the end of a decision's wait, the end of
// its memory, or the end of an early reward's wait for its decision.
type deadline struct {
	at int64
	e  *entry
}

type deadlines []deadline

func (h deadlines) Len() int { return len(h) }
func (h deadlines) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].e.offset < h[j].e.offset
}
func (h deadlines) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deadlines) Push(x any)   { *h = append(*h, x.(deadline)) }
func (h *deadlines) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// partState is the join state of one partition of the decision log. It is
// a deterministic function of the partition's records from a checkpoint's
// Start, given its Clock: time is the largest record timestamp seen (the
// partition's stream time), never the wall clock.
type partState struct {
	cfg       *Config
	codec     *decision.Codec
	clock     int64
	next      int64    // records from here produce output
	live      []*entry // by offset; gone ones are trimmed from the front
	decisions map[string]*entry
	early     map[string][]*entry // rewards by event id, waiting for their decision
	timers    deadlines
	cp        checkpoint // the last committed checkpoint
}

func newPartState(cfg *Config, codec *decision.Codec, cp checkpoint) *partState {
	return &partState{cfg: cfg, codec: codec, clock: cp.Clock, next: cp.Next, cp: cp,
		decisions: map[string]*entry{}, early: map[string][]*entry{}}
}

// checkpoint returns the state's checkpoint after the record before next.
func (p *partState) checkpoint() checkpoint {
	for len(p.live) > 0 && p.live[0].gone {
		p.live[0] = nil
		p.live = p.live[1:]
	}
	if len(p.live) == 0 {
		return checkpoint{Start: p.next, Next: p.next, Clock: p.clock}
	}
	return checkpoint{Start: p.live[0].offset, Next: p.next, Clock: p.live[0].clockBefore}
}

// process folds one record into the state and appends to out what it
// produces; out is returned unchanged for a record before next (a replay).
func (p *partState) process(r *kgo.Record, out []output) []output {
	emit := r.Offset >= p.next
	var outs []output
	clockBefore := p.clock
	if ts := r.Timestamp.UnixMilli(); ts > p.clock {
		p.clock = ts
	}
	outs = p.expire(outs)
	switch typeOf(r) {
	case decision.TypeTick:
	case decision.TypeDecision:
		d, err := p.codec.DecodeDecision(r.Value)
		if err != nil {
			outs = append(outs, output{dead: r, reason: ReasonUndecodable, detail: err.Error()})
			break
		}
		if p.cfg.Model != "" && d.Model != p.cfg.Model {
			break
		}
		if _, dup := p.decisions[d.EventID]; dup {
			outs = append(outs, output{dead: r, reason: ReasonDupDecision, detail: "a second decision with event id " + d.EventID})
			break
		}
		e := &entry{offset: r.Offset, clockBefore: clockBefore, d: &d, ts: r.Timestamp.UnixMilli(), rewarded: map[string]bool{}}
		p.add(e, e.ts+p.cfg.RewardWait.Milliseconds())
		p.decisions[d.EventID] = e
		for _, w := range p.early[d.EventID] {
			if !w.gone {
				w.gone = true
				outs = p.reward(e, w.reward, w.rec, outs)
			}
		}
		delete(p.early, d.EventID)
	case decision.TypeReward:
		rw, err := p.codec.DecodeReward(r.Value)
		if err != nil {
			outs = append(outs, output{dead: r, reason: ReasonUndecodable, detail: err.Error()})
			break
		}
		if p.cfg.Model != "" && rw.Model != p.cfg.Model {
			break
		}
		if e, ok := p.decisions[rw.EventID]; ok {
			outs = p.reward(e, &rw, r, outs)
			break
		}
		// The decision may follow: the sidecar logs it asynchronously,
		// so a quick client's reward can reach the log first.
		w := &entry{offset: r.Offset, clockBefore: clockBefore, reward: &rw, rec: r}
		p.add(w, r.Timestamp.UnixMilli()+p.cfg.RewardWait.Milliseconds())
		p.early[rw.EventID] = append(p.early[rw.EventID], w)
	default:
		outs = append(outs, output{dead: r, reason: ReasonUndecodable, detail: fmt.Sprintf("type header %q is not decision, reward or tick", typeOf(r))})
	}
	if r.Offset+1 > p.next {
		p.next = r.Offset + 1
	}
	if !emit {
		return out
	}
	return append(out, outs...)
}

func typeOf(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == decision.TypeHeader {
			return string(h.Value)
		}
	}
	return ""
}

func (p *partState) add(e *entry, at int64) {
	p.live = append(p.live, e)
	heap.Push(&p.timers, deadline{at: at, e: e})
}

// expire fires the timers due at the current clock, in deadline order.
func (p *partState) expire(outs []output) []output {
	wait := p.cfg.RewardWait.Milliseconds()
	for len(p.timers) > 0 && p.timers[0].at <= p.clock {
		t := heap.Pop(&p.timers).(deadline)
		e := t.e
		switch {
		case e.gone:
		case e.reward != nil: // no decision came
			e.gone = true
			outs = append(outs, output{dead: e.rec, reason: ReasonUnknown,
				detail: fmt.Sprintf("no decision %s within the reward wait %v", e.reward.EventID, p.cfg.RewardWait)})
			p.dropEarly(e)
		case !e.expired: // the wait ended: the zeros; remembered one more wait for late rewards
			e.expired = true
			outs = p.zeros(e, outs)
			heap.Push(&p.timers, deadline{at: e.ts + 2*wait, e: e})
		default:
			e.gone = true
			delete(p.decisions, e.d.EventID)
		}
	}
	return outs
}

func (p *partState) dropEarly(e *entry) {
	ws := p.early[e.reward.EventID]
	for i, w := range ws {
		if w == e {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(p.early, e.reward.EventID)
	} else {
		p.early[e.reward.EventID] = ws
	}
}

// reward matches a reward to its decision.
func (p *partState) reward(e *entry, rw *decision.Reward, r *kgo.Record, outs []output) []output {
	if e.expired {
		return append(outs, output{dead: r, reason: ReasonLate,
			detail: fmt.Sprintf("decision %s's reward wait %v had ended", rw.EventID, p.cfg.RewardWait)})
	}
	pos := int32(0)
	for _, it := range e.d.Items {
		if it.ProductID == rw.ProductID {
			pos = it.Position
			break
		}
	}
	switch {
	case pos == 0:
		return append(outs, output{dead: r, reason: ReasonNotInSlate,
			detail: fmt.Sprintf("product %s is not in decision %s's slate", rw.ProductID, rw.EventID)})
	case e.rewarded[rw.ProductID]:
		return append(outs, output{dead: r, reason: ReasonDuplicate,
			detail: fmt.Sprintf("product %s of decision %s was already rewarded", rw.ProductID, rw.EventID)})
	}
	e.rewarded[rw.ProductID] = true
	if rw.Reward > 0 && pos > e.deepest {
		e.deepest = pos
	}
	return append(outs, output{ev: &event.Event{EventID: EventID(rw.EventID, rw.ProductID), ProductID: rw.ProductID,
		Reward: rw.Reward, ContextVector: e.d.Context, Timestamp: rw.Timestamp}})
}

// zeros emits reward 0 for the counted products of a decision whose wait
// ended that were not rewarded: all of them, or (ImpressionsAbove) those
// above its deepest positive reward — all of them when none was rewarded
// positively: a user who examines the slate top down and clicks nothing has
// passed over every product.
func (p *partState) zeros(e *entry, outs []output) []output {
	for _, it := range e.d.Items {
		if e.rewarded[it.ProductID] {
			continue
		}
		if p.cfg.Impressions == ImpressionsAbove && e.deepest > 0 && it.Position >= e.deepest {
			continue
		}
		outs = append(outs, output{ev: &event.Event{EventID: EventID(e.d.EventID, it.ProductID), ProductID: it.ProductID,
			Reward: 0, ContextVector: e.d.Context, Timestamp: e.d.Timestamp}})
	}
	return outs
}

// EventID is the id of the feedback event the joiner emits for product of
// decision: the same on every run, so duplicates are detectable.
func EventID(decisionID, product string) string { return decisionID + "/" + product }
