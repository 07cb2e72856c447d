#!/usr/bin/env node
// podwire's command line: one place that turns flags into calls and errors into one line and an exit code.
import { Command } from 'commander';
import { registerAttach } from './cli/attach.js';
import { registerDemo } from './cli/demo.js';
import { registerLab } from './cli/lab.js';
import { registerTrace } from './cli/trace.js';
import { registerDoctor } from './doctor/doctor.js';

const program = new Command('podwire')
  .description('shows, for every pod on a node, how its network was wired')
  .version('0.1.0')
  .showHelpAfterError();

registerLab(program);
registerTrace(program);
registerAttach(program);
registerDemo(program);
registerDoctor(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`podwire: ${message}\n`);
  process.exitCode = 1;
  // The command cleaned up what it started; an exporter or socket still open must not keep a failed run alive.
  setTimeout(() => process.exit(1), 2000).unref();
});
