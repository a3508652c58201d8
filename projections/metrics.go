package projections

import "github.com/prometheus/client_golang/prometheus"

// Metric names of the read models' progress.
const (
	metricProjectionLag = "accessledger_projection_lag_seconds"
	metricProjectionPos = "accessledger_projection_position"
	metricProjectionUp  = "accessledger_projection_caught_up"
)

// Collector returns a Prometheus collector of the read models' progress
// (lag, position and whether caught up, per projection), read from status
// (the runner's Status) at each scrape.
func Collector(status func() []Status) prometheus.Collector { return projectionCollector{status} }

// projectionCollector reports the projection runner's status at each
// scrape.
type projectionCollector struct{ status func() []Status }

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
