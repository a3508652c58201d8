package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/accessledger/accessledger/projections"
)

// metrics are the handler's Prometheus metrics.
type metrics struct {
	requests *prometheus.HistogramVec
	commands *prometheus.CounterVec
	watchers prometheus.Gauge
}

// Metric names.
const (
	metricRequestDuration = "accessledger_http_request_duration_seconds"
	metricCommands        = "accessledger_commands_total"
	metricWatchStreams    = "accessledger_watch_streams"
	metricIndexPosition   = "accessledger_index_position"
	metricProjectionLag   = "accessledger_projection_lag_seconds"
	metricProjectionPos   = "accessledger_projection_position"
	metricProjectionUp    = "accessledger_projection_caught_up"
	metricLedgerOK        = "accessledger_ledger_ok"
	metricLedgerSize      = "accessledger_ledger_checkpoint_size"
)

func newMetrics(reg prometheus.Registerer, ix Index, status func() []projections.Status, gate *ledgerGate) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricRequestDuration,
			Help:    "Time to answer an HTTP request, by route pattern and status class (the watch stream counts its whole life).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "status_class"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricCommands,
			Help: "Commands answered, by command and outcome: ok, replayed (an Idempotency-Key's stored answer), or the problem code.",
		}, []string{"command", "outcome"}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricWatchStreams,
			Help: "Open watch streams (GET /v1/watch).",
		}),
	}
	index := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricIndexPosition,
		Help: "Commit position of the last event the in-memory access index applied.",
	}, func() float64 { return float64(ix.Position().Commit) })
	collectors := []prometheus.Collector{m.requests, m.commands, m.watchers, index, projectionCollector{status}}
	if gate != nil {
		collectors = append(collectors, ledgerGauges(gate)...)
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeRequest(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status/100)+"xx").Observe(d.Seconds())
}

func (m *metrics) command(name, outcome string) {
	m.commands.WithLabelValues(name, outcome).Inc()
}

// ledgerGauges report the ledger's state at each scrape (as the gate
// reads it: a scrape never waits for a checkpoint being published).
func ledgerGauges(g *ledgerGate) []prometheus.Collector {
	ok := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricLedgerOK,
		Help: "1 when the ledger has verified the stored event log against its signed checkpoints and found it consistent; 0 before that check has finished, and once the log was found tampered with.",
	}, func() float64 {
		if _, err := g.state(); err == nil {
			return 1
		}
		return 0
	})
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricLedgerSize,
		Help: "Tree size (number of events) of the newest signed checkpoint the ledger published or found; 0 when there is none yet.",
	}, func() float64 {
		size, _ := g.state()
		return float64(size)
	})
	return []prometheus.Collector{ok, size}
}

// projectionCollector reports the projection runner's status at each
// scrape.
type projectionCollector struct{ status func() []projections.Status }

var (
	descLag = prometheus.NewDesc(metricProjectionLag,
		"How long ago the first event a projection has not applied yet was recorded; 0 when caught up.", []string{"projection"}, nil)
	descPos = prometheus.NewDesc(metricProjectionPos,
		"Commit position of the last event a projection applied.", []string{"projection"}, nil)
	descUp = prometheus.NewDesc(metricProjectionUp,
		"1 when the projection is healthy and has applied every event it knows of, else 0.", []string{"projection"}, nil)
)

func (projectionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLag
	ch <- descPos
	ch <- descUp
}

func (c projectionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.status() {
		up := 0.0
		if st.CaughtUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, st.Lag.Seconds(), st.Name)
		ch <- prometheus.MustNewConstMetric(descPos, prometheus.GaugeValue, float64(st.Position.Commit), st.Name)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.Name)
	}
}

// serveMetrics is GET /metrics.
func (s *server) serveMetrics(w http.ResponseWriter, r *http.Request, _ call) error {
	s.metricsHandler.ServeHTTP(w, r)
	return nil
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
