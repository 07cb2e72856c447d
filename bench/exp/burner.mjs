// Stands in for `podwire trace` in bench/exp/rps.mjs: what CPU alone, at the tracer's priority, costs RunPodSandbox.
// It does nothing but take CPU: prints the ready line rps.mjs waits for, then spins BURN=on,off milliseconds
// (default 1,14: ~7% of a CPU) at nice BURN_NICE (10, podwire's default) until SIGINT. Example (bench/README.md):
//   VARIANTS='{"none":null,"burn7":{"cli":"bench/exp/burner.mjs"},
//     "burn20":{"cli":"bench/exp/burner.mjs","env":{"BURN":"2,8"}}}' ROUNDS=8 node bench/exp/rps.mjs
import { setPriority } from 'node:os';

const [on, off] = (process.env.BURN ?? '1,14').split(',').map(Number);
setPriority(Number(process.env.BURN_NICE ?? 10));
console.log('{"kind":"status","state":"ready"}');
const spin = () => {
  const end = performance.now() + on;
  while (performance.now() < end);
  setTimeout(spin, off);
};
spin();
process.on('SIGINT', () => process.exit(0));
