"""A client built on the official OpenTelemetry Python SDK: starts a span, injects its W3C
context (traceparent + baggage) into an HTTP request, and prints the ids as JSON.

usage: traced_client.py URL
"""
import json
import sys
import urllib.request

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("axi-obs-test-client")

token = context.attach(baggage.set_baggage("tenant", "acme"))
with tracer.start_as_current_span("python-client-call") as span:
    headers = {}
    propagate.inject(headers)
    request = urllib.request.Request(sys.argv[1], headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        status = response.status
        body = response.read().decode()
        request_id = response.headers.get("x-request-id")
    ctx = span.get_span_context()
    print(json.dumps({
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "traceparent": headers.get("traceparent"),
        "baggage": headers.get("baggage"),
        "status": status,
        "request_id": request_id,
        "body": body,
    }))
context.detach(token)
