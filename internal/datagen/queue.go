package datagen

// taskKind is what a scheduled task does.
type taskKind uint8

const (
	tInvite taskKind = iota
	tActivate
	tExpireInvitation
	tEnrolPhone
	tRequestReset
	tClearPhone
	tCloseAccount
	tRegister
	tAllocate
	tPlace
	tEnd
	tEndGrace
	tExpireGrace
	tRespite
	tGrant
	tReview
	tRevoke
	tLeave
	tCancelPlacement
	tReopen
	tRequestEmail
	tChangeEmail
	tMarkStart
	tMarkEnd
	tExpireGrant
)

// task is one decision due at a time (Unix microseconds): a command some
// actor sends then. Which fields matter depends on kind.
type task struct {
	at   int64
	seq  uint64
	eff  int64 // an effective time: a placement's start or end
	k    *kid
	a    *acct
	p    *placement
	g    *grant
	kind taskKind
	n    uint8 // a variant: placement kind, end flavour, allocation kind
}

// queue is a binary min-heap of tasks by (at, seq): the region's agenda.
type queue []task

func (q queue) less(i, j int) bool {
	return q[i].at < q[j].at || (q[i].at == q[j].at && q[i].seq < q[j].seq)
}

func (q *queue) push(t task) {
	*q = append(*q, t)
	h := *q
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (q *queue) pop() task {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = task{} // drop the pointers
	h = h[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}
