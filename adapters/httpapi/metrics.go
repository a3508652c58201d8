package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	metricLedgerOK        = "accessledger_ledger_ok"
	metricLedgerSize      = "accessledger_ledger_checkpoint_size"
)

func newMetrics(reg prometheus.Registerer, engine []prometheus.Collector, q Queries) (*metrics, error) {
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
	collectors := append([]prometheus.Collector{m.requests, m.commands, m.watchers}, engine...)
	if _, on := q.LedgerCheckpointSize(); on {
		collectors = append(collectors, ledgerGauges(q)...)
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

// ledgerGauges report the ledger's state at each scrape (a scrape never
// waits for a checkpoint being published).
func ledgerGauges(q Queries) []prometheus.Collector {
	ok := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricLedgerOK,
		Help: "1 when the ledger has verified the stored event log against its signed checkpoints and found it consistent; 0 before that check has finished, and once the log was found tampered with.",
	}, func() float64 {
		if q.LedgerHealth() == nil {
			return 1
		}
		return 0
	})
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricLedgerSize,
		Help: "Tree size (number of events) of the newest signed checkpoint the ledger published or found; 0 when there is none yet.",
	}, func() float64 {
		size, _ := q.LedgerCheckpointSize()
		return float64(size)
	})
	return []prometheus.Collector{ok, size}
}

// serveMetrics is GET /metrics.
func (s *server) serveMetrics(w http.ResponseWriter, r *http.Request, _ call) error {
	s.metricsHandler.ServeHTTP(w, r)
	return nil
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
