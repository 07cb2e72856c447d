// The lab's record of itself (lab.json in its state dir): what it made, so that `lab down` removes exactly that.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { ConflistFacts } from './config.js';
import type { LabPaths } from './paths.js';

export interface LabRecord {
  version: 1;
  createdAt: string;
  containerdBinary: string;
  /** 'default' or the path given to --cni-config. */
  cniConfigSource: string;
  network: ConflistFacts;
  /** Bridges that did not exist before the lab: only these are deleted by `lab down`. */
  bridgesCreated: string[];
  /** Directories outside the lab's root and state that the lab (or the runtime it started) created. */
  dirsCreated: string[];
  /** The cgroup parent of every lab pod, one tree to remove in each cgroup hierarchy. */
  cgroupParent: string;
  /** Network namespace pins of the pods the lab created, in case the runtime cannot remove them. */
  netnsPaths: string[];
}

export function readLabRecord(paths: LabPaths): LabRecord | null {
  try {
    const record = JSON.parse(readFileSync(paths.labRecord, 'utf8')) as LabRecord;
    return record.version === 1 ? record : null;
  } catch {
    return null;
  }
}

/** Written whole to a temporary file and renamed, so a crash never leaves half a record. */
export function writeLabRecord(paths: LabPaths, record: LabRecord): void {
  const temporary = `${paths.labRecord}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(temporary, paths.labRecord);
}

export function rememberNetns(paths: LabPaths, netnsPaths: string[]): void {
  const record = readLabRecord(paths);
  if (!record) return;
  const known = new Set(record.netnsPaths);
  for (const path of netnsPaths) known.add(path);
  writeLabRecord(paths, { ...record, netnsPaths: [...known] });
}
