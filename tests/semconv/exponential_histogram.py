"""The OpenTelemetry Python SDK's base-2 exponential histogram of the values
given (a JSON list on stdin), with OBI's limits (160 buckets, scale 20), as
one JSON object: scale, zero_count, offset, bucket_counts, count, sum, min,
max. The reference the agent's exponential histograms are checked against
(tests/src/otel_sdk.rs). Only the SDK's public API is used.
"""

import json
import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

values = json.load(sys.stdin)
reader = InMemoryMetricReader()
provider = MeterProvider(
    metric_readers=[reader],
    views=[
        View(
            instrument_name="values",
            aggregation=ExponentialBucketHistogramAggregation(max_size=160, max_scale=20),
        )
    ],
)
histogram = provider.get_meter("zerotrace-tests").create_histogram("values")
for value in values:
    histogram.record(value)
data = reader.get_metrics_data()
(point,) = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
json.dump(
    {
        "scale": point.scale,
        "zero_count": point.zero_count,
        "offset": point.positive.offset,
        "bucket_counts": list(point.positive.bucket_counts),
        "count": point.count,
        "sum": point.sum,
        "min": point.min,
        "max": point.max,
    },
    sys.stdout,
)
provider.shutdown()
