// Where OTLP traces go and over which protocol: `--otlp [ENDPOINT]` first, then the standard OTEL_* variables.
// No OpenTelemetry import here: podwire checks this at once, before the export thread loads the SDK.

export const otlpProtocols = ['http/protobuf', 'http/json', 'grpc'] as const;
export type OtlpProtocol = (typeof otlpProtocols)[number];

export interface OtlpDestination {
  protocol: OtlpProtocol;
  /** Where the spans are sent, for messages: the URL the exporter posts to, or the gRPC target. */
  url: string;
  /** The URL to hand the exporter; undefined lets it read OTEL_EXPORTER_OTLP_* itself (headers, TLS and all). */
  exporterUrl: string | undefined;
}

const env = (name: string) => process.env[name]?.trim() || undefined;

/** The protocol the OTEL_* variables ask for; http/protobuf when they say nothing, as the specification says. */
export function protocolFromEnv(): OtlpProtocol | { error: string } {
  const name = env('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL')
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const value = env(name) ?? 'http/protobuf';
  if ((otlpProtocols as readonly string[]).includes(value)) return value as OtlpProtocol;
  return {
    error: `${name}=${value} is not an OTLP protocol podwire speaks: use ${otlpProtocols.join(', ')}`,
  };
}

/**
 * An endpoint as `--otlp` takes it, like OTEL_EXPORTER_OTLP_ENDPOINT: a base URL (`http://collector:4318`) to which
 * HTTP adds `/v1/traces` unless it is already there; for gRPC, the target as given.
 */
export function otlpDestination(
  endpoint: string | undefined,
  protocol: OtlpProtocol,
): OtlpDestination | { error: string } {
  const grpc = protocol === 'grpc';
  if (endpoint !== undefined) {
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`;
    let parsed: URL;
    try {
      parsed = new URL(withScheme);
    } catch {
      return {
        error: `--otlp ${endpoint} is not an endpoint: give a URL such as http://127.0.0.1:${grpc ? 4317 : 4318}`,
      };
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      return { error: `--otlp ${endpoint}: the scheme must be http or https` };
    }
    if (grpc) return { protocol, url: withScheme, exporterUrl: withScheme };
    const url = /\/v1\/traces\/?$/.test(parsed.pathname)
      ? withScheme
      : `${withScheme.replace(/\/+$/, '')}/v1/traces`;
    return { protocol, url, exporterUrl: url };
  }
  const specific = env('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const general = env('OTEL_EXPORTER_OTLP_ENDPOINT');
  const url = grpc
    ? (specific ?? general ?? 'http://localhost:4317')
    : (specific ??
      (general ? `${general.replace(/\/+$/, '')}/v1/traces` : 'http://localhost:4318/v1/traces'));
  return { protocol, url, exporterUrl: undefined };
}
