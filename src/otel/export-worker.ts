// The OTLP export on a thread of its own: making spans and encoding them costs as much as decoding and
// correlating the events they come from, so it runs beside the pipeline instead of in its way.
// Messages: see ExportWorkerRequest / ExportWorkerReply in sinks/otlp.ts.
import { parentPort, workerData } from 'node:worker_threads';
import type { HandshakeRecord } from '../correlate/record.js';
import type { ExportWorkerReply, ExportWorkerRequest, ExportWorkerSetup } from '../sinks/otlp.js';
import { type ExportCounters, noDrops } from './drops.js';
import { RecordTracer } from './record-tracer.js';
import { startTelemetry } from './telemetry.js';

const port = parentPort;
if (!port) throw new Error('export-worker.js runs as a worker thread of podwire');
const setup = workerData as ExportWorkerSetup;
const reply = (message: ExportWorkerReply) => port.postMessage(message);

// The counters go to the main thread as they move (once per turn of the event loop at most), so that the metric
// it serves counts a drop even when no record comes after it.
let countersPosted = true;
const postCounters = () => {
  if (!countersPosted) return;
  countersPosted = false;
  setImmediate(() => {
    countersPosted = true;
    reply({ type: 'counters', counters: counters() });
  });
};

const telemetry = await startTelemetry({
  otlp: { endpoint: setup.endpoint },
  status: (event) => reply({ type: 'status', event }),
  counters: postCounters,
});
if ('error' in telemetry) reply({ type: 'error', message: telemetry.error });
const tracer = 'error' in telemetry ? null : new RecordTracer(telemetry);
const nothing: ExportCounters = { exported: 0, dropped: noDrops() };
const counters = () => ('error' in telemetry ? nothing : (telemetry.queue?.counters ?? nothing));

// One batch at a time, in order; a replay's batch is acknowledged only once the queue has room again.
let work = Promise.resolve();
port.on('message', (message: ExportWorkerRequest) => {
  work = work.then(async () => {
    if (message.type === 'records') {
      if (tracer) {
        for (const line of message.text.split('\n'))
          tracer.write(JSON.parse(line) as HandshakeRecord);
        if (setup.waitForCollector) await tracer.backlog();
      }
      reply({ type: 'ack', records: message.count, counters: counters() });
    } else {
      if (!('error' in telemetry)) await telemetry.shutdown();
      reply({ type: 'stopped', counters: counters() });
    }
  });
});
