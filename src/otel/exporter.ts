// The OTLP span exporter for a destination: the SDK's own, one per protocol.
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import type { OtlpDestination } from './destination.js';

export function createSpanExporter(destination: OtlpDestination): SpanExporter {
  const config = destination.exporterUrl ? { url: destination.exporterUrl } : {};
  switch (destination.protocol) {
    case 'grpc':
      return new GrpcExporter(config);
    case 'http/json':
      return new JsonExporter(config);
    case 'http/protobuf':
      return new ProtobufExporter(config);
  }
}
