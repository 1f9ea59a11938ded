// An OpenTelemetry JS client for the integration tests: spans over OTLP/HTTP in JSON, the
// default of @opentelemetry/exporter-trace-otlp-http, to the URL given.
//
// Usage: node otlp_json.mjs URL      (URL: http://HOST:PORT/v1/traces)
//
// Makes a SERVER span `node-request` with a child `node-work` (attribute app.hubabuba),
// exports them with a SimpleSpanProcessor, and prints one JSON line:
//   {"spans": [{"trace_id": HEX32, "span_id": HEX16, "parent_id": HEX16|null, "name": N}]}
import { trace, context, SpanKind } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  TracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace';

const url = process.argv[2];
if (!url) {
  console.error('usage: node otlp_json.mjs URL');
  process.exit(2);
}
const seen = new InMemorySpanExporter();
const provider = new TracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'node-app' }),
  spanProcessors: [
    new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url }) }),
    new SimpleSpanProcessor({ exporter: seen }),
  ],
});
const tracer = provider.getTracer('node-test');
const root = tracer.startSpan('node-request', {
  kind: SpanKind.SERVER,
  attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200 },
});
const ctx = trace.setSpan(context.active(), root);
const child = tracer.startSpan('node-work', { attributes: { 'app.hubabuba': 'node' } }, ctx);
child.end();
root.end();
await provider.forceFlush();
const finished = seen.getFinishedSpans();
await provider.shutdown();
const spans = finished.map((s) => ({
  trace_id: s.spanContext().traceId,
  span_id: s.spanContext().spanId,
  parent_id: s.parentSpanContext ? s.parentSpanContext.spanId : null,
  name: s.name,
}));
console.log(JSON.stringify({ spans }));
