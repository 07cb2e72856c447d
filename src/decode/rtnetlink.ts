// Turns the rtnetlink bytes a CNI plugin sent or received (as bpftrace captured them) into what it asked the kernel to do.
//
// Pure and total: any input decodes to an array, never an exception. What could not be read is
// said in `truncated` (the bytes were cut off by the capture) and `problems` (the bytes lie).
// Netlink is in host byte order; this reads little-endian, as on x86-64 and arm64.
// Numbers are from the Linux uapi headers: linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h,
// veth.h, if.h, and errno values from asm-generic/errno*.h (checked by compiling against them).

export interface NetlinkMessage {
  /** nlmsg_type; `typeName` is 'RTM_NEWLINK', 'NLMSG_ERROR', ... 'type 99', or 'not captured'. */
  type: number;
  typeName: string;
  flags: number;
  /** NLM_F_* names; the meaning of 0x100-0x800 depends on the type (NEW, GET, DEL, ack). */
  flagNames: readonly string[];
  seq: number;
  portId: number;
  /** nlmsg_len as the header says. */
  length: number;
  /** The message (or an attribute) runs past the captured bytes. */
  truncated: boolean;
  /** What was malformed, in words. */
  problems: string[];
  link?: LinkMessage;
  addr?: AddrMessage;
  route?: RouteMessage;
  error?: ErrorMessage;
}

export interface LinkMessage {
  family: number;
  /** ifi_type (ARPHRD_*). */
  deviceType: number;
  ifindex: number;
  flags: number;
  change: number;
  /** IFF_UP as this message sets (request) or reports (reply) it; undefined when it does not touch it. */
  up: boolean | undefined;
  ifname?: string;
  master?: number;
  mtu?: number;
  txqlen?: number;
  /** IFLA_ADDRESS as 'aa:bb:cc:dd:ee:ff'. */
  address?: string;
  /** IFLA_NET_NS_FD: the link is created in, or moved to, the namespace behind this fd of the sender. */
  netnsFd?: number;
  /** IFLA_NET_NS_PID: ... the namespace of this process. */
  netnsPid?: number;
  targetNetnsId?: number;
  linkNetnsId?: number;
  /** IFLA_LINKINFO/IFLA_INFO_KIND: 'veth', 'bridge', ... */
  kind?: string;
  /** IFLA_LINKINFO/IFLA_INFO_SLAVE_KIND: 'bridge' for a bridge port. */
  slaveKind?: string;
  /** The other end of a veth pair (IFLA_INFO_DATA/VETH_INFO_PEER). */
  peer?: LinkMessage;
}

export interface AddrMessage {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
  /** IFA_LOCAL as text: '10.244.77.5'. */
  local?: string;
  /** IFA_ADDRESS as text (the peer on point-to-point links, otherwise the same as local). */
  address?: string;
  broadcast?: string;
  label?: string;
}

export interface RouteMessage {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  /** rtm_table; RTA_TABLE (`tableId`) holds tables above 255. */
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  /** RTA_DST with its length: '10.244.0.0/16'. */
  dst?: string;
  src?: string;
  gateway?: string;
  prefsrc?: string;
  oif?: number;
  iif?: number;
  priority?: number;
  tableId?: number;
}

export interface ErrorMessage {
  /** Positive errno; 0 for an ack. */
  errno: number;
  ack: boolean;
  /** 'EEXIST', 'OK' for an ack, 'errno 123' when not in the table. */
  errnoName: string;
  /** The header of the request this answers, echoed by the kernel. */
  request?: {
    type: number;
    typeName: string;
    flags: number;
    flagNames: readonly string[];
    seq: number;
    portId: number;
    length: number;
  };
  /** The whole request, decoded, when the kernel echoed it (errors without NLM_F_CAPPED). */
  echoed?: NetlinkMessage;
  /** Extended ack (NLM_F_ACK_TLVS): the kernel's message and the offset of the attribute it blames. */
  extack?: { msg?: string; offset?: number };
}

// linux/netlink.h
const NLMSG_HDRLEN = 16;
const NLMSG_ERROR = 2;
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLM_F_DUMP = 0x300;
const NLMSGERR_ATTR_MSG = 1;
const NLMSGERR_ATTR_OFFS = 2;
const NLA_HDRLEN = 4;
const NLA_TYPE_MASK = 0x3fff; // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)

// linux/rtnetlink.h
const RTM_BASE = 16;
const RTM_NEWLINK = 16;
const RTM_SETLINK = 19;
const RTM_NEWADDR = 20;
const RTM_GETADDR = 22;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;
const IFINFOMSG_LEN = 16;
const IFADDRMSG_LEN = 8;
const RTMSG_LEN = 12;
const RTA_DST = 1;
const RTA_SRC = 2;
const RTA_IIF = 3;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_TABLE = 15;

// linux/if_link.h, linux/veth.h, linux/if.h
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_TXQLEN = 13;
const IFLA_LINKINFO = 18;
const IFLA_NET_NS_PID = 19;
const IFLA_NET_NS_FD = 28;
const IFLA_LINK_NETNSID = 37;
const IFLA_TARGET_NETNSID = 46;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_INFO_SLAVE_KIND = 4;
const VETH_INFO_PEER = 1;
const IFF_UP = 0x1;

// linux/if_addr.h
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_LABEL = 3;
const IFA_BROADCAST = 4;

/** A veth peer is itself a link message; deeper nesting than this is not followed. */
const MAX_DEPTH = 4;

const controlTypeNames: Record<number, string> = {
  1: 'NLMSG_NOOP',
  2: 'NLMSG_ERROR',
  3: 'NLMSG_DONE',
  4: 'NLMSG_OVERRUN',
};

const rtmTypeNames: Record<number, string> = {
  16: 'RTM_NEWLINK',
  17: 'RTM_DELLINK',
  18: 'RTM_GETLINK',
  19: 'RTM_SETLINK',
  20: 'RTM_NEWADDR',
  21: 'RTM_DELADDR',
  22: 'RTM_GETADDR',
  24: 'RTM_NEWROUTE',
  25: 'RTM_DELROUTE',
  26: 'RTM_GETROUTE',
  28: 'RTM_NEWNEIGH',
  29: 'RTM_DELNEIGH',
  30: 'RTM_GETNEIGH',
  32: 'RTM_NEWRULE',
  33: 'RTM_DELRULE',
  34: 'RTM_GETRULE',
  36: 'RTM_NEWQDISC',
  37: 'RTM_DELQDISC',
  38: 'RTM_GETQDISC',
  40: 'RTM_NEWTCLASS',
  41: 'RTM_DELTCLASS',
  42: 'RTM_GETTCLASS',
  44: 'RTM_NEWTFILTER',
  45: 'RTM_DELTFILTER',
  46: 'RTM_GETTFILTER',
  48: 'RTM_NEWACTION',
  49: 'RTM_DELACTION',
  50: 'RTM_GETACTION',
  52: 'RTM_NEWPREFIX',
  58: 'RTM_GETMULTICAST',
  62: 'RTM_GETANYCAST',
  64: 'RTM_NEWNEIGHTBL',
  66: 'RTM_GETNEIGHTBL',
  67: 'RTM_SETNEIGHTBL',
  68: 'RTM_NEWNDUSEROPT',
  72: 'RTM_NEWADDRLABEL',
  73: 'RTM_DELADDRLABEL',
  74: 'RTM_GETADDRLABEL',
  78: 'RTM_GETDCB',
  79: 'RTM_SETDCB',
  80: 'RTM_NEWNETCONF',
  81: 'RTM_DELNETCONF',
  82: 'RTM_GETNETCONF',
  84: 'RTM_NEWMDB',
  85: 'RTM_DELMDB',
  86: 'RTM_GETMDB',
  88: 'RTM_NEWNSID',
  89: 'RTM_DELNSID',
  90: 'RTM_GETNSID',
  92: 'RTM_NEWSTATS',
  94: 'RTM_GETSTATS',
  95: 'RTM_SETSTATS',
  96: 'RTM_NEWCACHEREPORT',
  100: 'RTM_NEWCHAIN',
  101: 'RTM_DELCHAIN',
  102: 'RTM_GETCHAIN',
  104: 'RTM_NEWNEXTHOP',
  105: 'RTM_DELNEXTHOP',
  106: 'RTM_GETNEXTHOP',
  108: 'RTM_NEWLINKPROP',
  109: 'RTM_DELLINKPROP',
  110: 'RTM_GETLINKPROP',
  112: 'RTM_NEWVLAN',
  113: 'RTM_DELVLAN',
  114: 'RTM_GETVLAN',
  116: 'RTM_NEWNEXTHOPBUCKET',
  117: 'RTM_DELNEXTHOPBUCKET',
  118: 'RTM_GETNEXTHOPBUCKET',
  120: 'RTM_NEWTUNNEL',
  121: 'RTM_DELTUNNEL',
  122: 'RTM_GETTUNNEL',
};

// Linux (x86-64, arm64: asm-generic) values. ENOTSUP is EOPNOTSUPP (95) on Linux.
const errnoNames: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  3: 'ESRCH',
  4: 'EINTR',
  5: 'EIO',
  6: 'ENXIO',
  7: 'E2BIG',
  9: 'EBADF',
  11: 'EAGAIN',
  12: 'ENOMEM',
  13: 'EACCES',
  16: 'EBUSY',
  17: 'EEXIST',
  19: 'ENODEV',
  20: 'ENOTDIR',
  22: 'EINVAL',
  23: 'ENFILE',
  24: 'EMFILE',
  28: 'ENOSPC',
  34: 'ERANGE',
  90: 'EMSGSIZE',
  93: 'EPROTONOSUPPORT',
  95: 'EOPNOTSUPP',
  96: 'EPFNOSUPPORT',
  97: 'EAFNOSUPPORT',
  98: 'EADDRINUSE',
  99: 'EADDRNOTAVAIL',
  100: 'ENETDOWN',
  101: 'ENETUNREACH',
  105: 'ENOBUFS',
  107: 'ENOTCONN',
  110: 'ETIMEDOUT',
  113: 'EHOSTUNREACH',
};

/** 'RTM_NEWLINK', 'NLMSG_ERROR', ... or 'type 99'. */
export function netlinkTypeName(type: number): string {
  return controlTypeNames[type] ?? rtmTypeNames[type] ?? `type ${type}`;
}

/** 'EEXIST', 'OK' for 0, or 'errno 123'. */
export function errnoName(errno: number): string {
  if (errno === 0) return 'OK';
  return errnoNames[errno] ?? `errno ${errno}`;
}

const baseFlags: [number, string][] = [
  [0x01, 'NLM_F_REQUEST'],
  [0x02, 'NLM_F_MULTI'],
  [0x04, 'NLM_F_ACK'],
  [0x08, 'NLM_F_ECHO'],
  [0x10, 'NLM_F_DUMP_INTR'],
  [0x20, 'NLM_F_DUMP_FILTERED'],
];
const newFlags: [number, string][] = [
  [0x100, 'NLM_F_REPLACE'],
  [0x200, 'NLM_F_EXCL'],
  [0x400, 'NLM_F_CREATE'],
  [0x800, 'NLM_F_APPEND'],
];
const getFlags: [number, string][] = [
  [NLM_F_DUMP, 'NLM_F_DUMP'],
  [0x100, 'NLM_F_ROOT'],
  [0x200, 'NLM_F_MATCH'],
  [0x400, 'NLM_F_ATOMIC'],
];
const delFlags: [number, string][] = [
  [0x100, 'NLM_F_NONREC'],
  [0x200, 'NLM_F_BULK'],
];
const ackFlags: [number, string][] = [
  [NLM_F_CAPPED, 'NLM_F_CAPPED'],
  [NLM_F_ACK_TLVS, 'NLM_F_ACK_TLVS'],
];
const noFlags: [number, string][] = [];
const modifierSets = [ackFlags, newFlags, getFlags, delFlags, noFlags];

type RtmKind = 'new' | 'del' | 'get' | 'set';

/** As the kernel sorts them (rtm_msgtype_kind): NEW, DEL, GET, SET in each group of four. */
function rtmKind(type: number): RtmKind | undefined {
  if (rtmTypeNames[type] === undefined) return undefined;
  return (['new', 'del', 'get', 'set'] as const)[(type - RTM_BASE) & 3];
}

/**
 * The names of each (modifier set, flags) pair met so far, shared and frozen: every message of a capture carries
 * one of a handful, and a list built per message was a large share of what a replay allocates.
 */
const flagNamesSeen = new Map<number, readonly string[]>();

/** NLM_F_* names for these flags on a message of this type; bits without a name as '0x1000'. */
export function netlinkFlagNames(type: number, flags: number): readonly string[] {
  const kind = rtmKind(type);
  const modifiers =
    type === NLMSG_ERROR
      ? ackFlags
      : kind === 'new'
        ? newFlags
        : kind === 'get'
          ? getFlags
          : kind === 'del'
            ? delFlags
            : noFlags;
  // flags is a u16: the modifier set goes above it.
  const key = modifierSets.indexOf(modifiers) * 0x10000 + flags;
  const seen = flagNamesSeen.get(key);
  if (seen) return seen;
  const names: string[] = [];
  let left = flags;
  for (const [bits, name] of [...baseFlags, ...modifiers]) {
    if ((left & bits) === bits) {
      names.push(name);
      left &= ~bits;
    }
  }
  for (let bit = 1; bit <= 0x8000; bit <<= 1) {
    if (left & bit) names.push(`0x${bit.toString(16)}`);
  }
  const frozen = Object.freeze(names);
  flagNamesSeen.set(key, frozen);
  return frozen;
}

/**
 * Decodes every message in a netlink buffer. `syscallLength` is what the syscall said the buffer
 * was: a message cut by the capture is `truncated`, decoded as far as it goes, and a capture that
 * stops between messages ends in a message typed 'not captured'.
 */
export function decodeNetlink(bytes: Uint8Array, syscallLength?: number): NetlinkMessage[] {
  const total =
    syscallLength !== undefined && Number.isSafeInteger(syscallLength) && syscallLength >= 0
      ? syscallLength
      : bytes.length;
  // Bytes captured past what the syscall reported were never part of the message.
  const captured = bytes.subarray(0, Math.min(bytes.length, total));
  const messages: NetlinkMessage[] = [];
  let offset = 0;
  while (offset < total) {
    if (offset >= captured.length) {
      messages.push(notCaptured());
      break;
    }
    const { message, next } = decodeMessageAt(captured, offset, total, 0);
    messages.push(message);
    if (next === undefined) break;
    offset = next;
  }
  return messages;
}

/** One message at `offset`; `total` is where the buffer ends, `captured.length` where the capture does. */
function decodeMessageAt(
  captured: Uint8Array,
  offset: number,
  total: number,
  depth: number,
): { message: NetlinkMessage; next?: number } {
  const reader = new Reader(captured);
  const left = total - offset;
  if (captured.length - offset < NLMSG_HDRLEN) {
    const message = notCaptured();
    // Only part of the header: say what there is.
    message.truncated = true;
    if (left < NLMSG_HDRLEN) {
      message.problems.push(
        `${left} bytes at the end are too few for a ${NLMSG_HDRLEN}-byte header`,
      );
    }
    const length = reader.u32(offset);
    const type = reader.u16(offset + 4);
    const flags = reader.u16(offset + 6);
    if (length !== undefined) message.length = length;
    if (type !== undefined) {
      message.type = type;
      message.typeName = netlinkTypeName(type);
    }
    if (flags !== undefined) {
      message.flags = flags;
      message.flagNames = netlinkFlagNames(message.type, flags);
    }
    message.seq = reader.u32(offset + 8) ?? 0;
    message.portId = reader.u32(offset + 12) ?? 0;
    return { message };
  }
  const length = reader.u32(offset) ?? 0;
  const type = reader.u16(offset + 4) ?? 0;
  const flags = reader.u16(offset + 6) ?? 0;
  // In notCaptured()'s order of fields: the messages of both paths have one shape.
  const message: NetlinkMessage = {
    type,
    typeName: netlinkTypeName(type),
    flags,
    flagNames: netlinkFlagNames(type, flags),
    seq: reader.u32(offset + 8) ?? 0,
    portId: reader.u32(offset + 12) ?? 0,
    length,
    truncated: false,
    problems: [],
  };
  if (length < NLMSG_HDRLEN) {
    message.problems.push(
      `nlmsg_len ${length} is shorter than the ${NLMSG_HDRLEN}-byte header: the rest of the buffer is not read`,
    );
    return { message };
  }
  const end = offset + length;
  let next: number | undefined = offset + align(length);
  if (end > total) {
    // Read what there is as the message's own; the lie is in its length alone.
    message.problems.push(
      `nlmsg_len ${length} runs past the end of the buffer (${left} bytes left): the rest is not read`,
    );
    next = undefined;
  }
  const body: Region = { start: offset + NLMSG_HDRLEN, end, cap: Math.min(end, captured.length) };
  const context: MessageContext = { reader, message, base: offset, depth };
  if (body.cap < body.end) message.truncated = true;
  decodeBody(context, body);
  return next === undefined ? { message } : { message, next };
}

/** A stretch of the buffer: `end` where it ends as declared, `cap` where the capture stops (<= end). */
interface Region {
  start: number;
  end: number;
  cap: number;
}

interface MessageContext {
  reader: Reader;
  message: NetlinkMessage;
  /** Where the message starts, for offsets in problems (relative, like the kernel's extack offsets). */
  base: number;
  depth: number;
}

interface Attribute extends Region {
  type: number;
  /** Offset of the attribute header from the start of the message. */
  at: number;
}

function decodeBody(context: MessageContext, body: Region): void {
  const { message } = context;
  const { type, flags } = message;
  if (type === NLMSG_ERROR) {
    message.error = decodeError(context, body);
    return;
  }
  // Dump requests often carry another, shorter struct (rtgenmsg; Go's netlink sends an ifinfomsg
  // with RTM_GETADDR): only their family is sure, and their attributes (filters) are not walked.
  const dumpRequest = rtmKind(type) === 'get' && (flags & NLM_F_DUMP) !== 0;
  if (type >= RTM_NEWLINK && type <= RTM_SETLINK) {
    if (hasStruct(context, body, IFINFOMSG_LEN, 'ifinfomsg', dumpRequest)) {
      message.link = decodeLink(context, body, dumpRequest);
    }
  } else if (type >= RTM_NEWADDR && type <= RTM_GETADDR) {
    if (hasStruct(context, body, IFADDRMSG_LEN, 'ifaddrmsg', dumpRequest)) {
      message.addr = decodeAddr(context, body, dumpRequest);
    }
  } else if (type >= RTM_NEWROUTE && type <= RTM_GETROUTE) {
    if (hasStruct(context, body, RTMSG_LEN, 'rtmsg', dumpRequest)) {
      message.route = decodeRoute(context, body, dumpRequest);
    }
  }
}

/** Whether the fixed struct at the start of the body is there to read. */
function hasStruct(
  context: MessageContext,
  body: Region,
  size: number,
  name: string,
  dumpRequest: boolean,
): boolean {
  if (body.end - body.start < size) {
    if (!dumpRequest) {
      context.message.problems.push(
        `${context.message.typeName} body is ${body.end - body.start} bytes, ${name} needs ${size}`,
      );
    }
    return false;
  }
  return body.cap - body.start >= size;
}

function decodeLink(context: MessageContext, region: Region, skipAttributes = false): LinkMessage {
  const { reader } = context;
  const at = region.start;
  const flags = reader.u32(at + 8) ?? 0;
  const change = reader.u32(at + 12) ?? 0;
  const link: LinkMessage = {
    family: reader.u8(at) ?? 0,
    deviceType: reader.u16(at + 2) ?? 0,
    ifindex: reader.i32(at + 4) ?? 0,
    flags,
    change,
    up: linkUp(flags, change),
  };
  if (skipAttributes) return link;
  const attributes = walkAttributes(context, { ...region, start: at + IFINFOMSG_LEN }, 'ifinfomsg');
  for (const attribute of attributes) {
    switch (attribute.type) {
      case IFLA_IFNAME:
        link.ifname = stringOf(context, attribute);
        break;
      case IFLA_ADDRESS:
        link.address = macOf(attribute, context);
        break;
      case IFLA_MTU:
        link.mtu = u32Of(context, attribute, 'IFLA_MTU');
        break;
      case IFLA_MASTER:
        link.master = u32Of(context, attribute, 'IFLA_MASTER');
        break;
      case IFLA_TXQLEN:
        link.txqlen = u32Of(context, attribute, 'IFLA_TXQLEN');
        break;
      case IFLA_NET_NS_FD:
        link.netnsFd = u32Of(context, attribute, 'IFLA_NET_NS_FD');
        break;
      case IFLA_NET_NS_PID:
        link.netnsPid = u32Of(context, attribute, 'IFLA_NET_NS_PID');
        break;
      case IFLA_TARGET_NETNSID:
        link.targetNetnsId = i32Of(context, attribute, 'IFLA_TARGET_NETNSID');
        break;
      case IFLA_LINK_NETNSID:
        link.linkNetnsId = i32Of(context, attribute, 'IFLA_LINK_NETNSID');
        break;
      case IFLA_LINKINFO:
        decodeLinkInfo(context, attribute, link);
        break;
    }
  }
  return withoutUndefined(link);
}

/**
 * The kernel changes the flags in ifi_change to their value in ifi_flags; a change of 0 means all
 * flags, and a message with both 0 changes none (rtnl_dev_combine_flags, do_setlink).
 */
function linkUp(flags: number, change: number): boolean | undefined {
  if (change === 0) return flags === 0 ? undefined : (flags & IFF_UP) !== 0;
  return (change & IFF_UP) !== 0 ? (flags & IFF_UP) !== 0 : undefined;
}

function decodeLinkInfo(context: MessageContext, linkinfo: Attribute, link: LinkMessage): void {
  let data: Attribute | undefined;
  for (const attribute of walkAttributes(context, linkinfo, 'IFLA_LINKINFO')) {
    if (attribute.type === IFLA_INFO_KIND) link.kind = stringOf(context, attribute);
    else if (attribute.type === IFLA_INFO_SLAVE_KIND) link.slaveKind = stringOf(context, attribute);
    else if (attribute.type === IFLA_INFO_DATA) data = attribute;
  }
  // IFLA_INFO_DATA means what the kind says; it may come before the kind.
  if (data === undefined || link.kind !== 'veth') return;
  for (const attribute of walkAttributes(context, data, 'IFLA_INFO_DATA')) {
    if (attribute.type !== VETH_INFO_PEER) continue;
    if (attribute.end - attribute.start < IFINFOMSG_LEN) {
      context.message.problems.push(
        `VETH_INFO_PEER is ${attribute.end - attribute.start} bytes, its ifinfomsg needs ${IFINFOMSG_LEN}`,
      );
    } else if (context.depth + 1 >= MAX_DEPTH) {
      context.message.problems.push(`VETH_INFO_PEER nested deeper than ${MAX_DEPTH}: not read`);
    } else if (attribute.cap - attribute.start >= IFINFOMSG_LEN) {
      link.peer = decodeLink({ ...context, depth: context.depth + 1 }, attribute);
    }
  }
}

function decodeAddr(context: MessageContext, region: Region, skipAttributes: boolean): AddrMessage {
  const { reader } = context;
  const at = region.start;
  const addr: AddrMessage = {
    family: reader.u8(at) ?? 0,
    prefixlen: reader.u8(at + 1) ?? 0,
    flags: reader.u8(at + 2) ?? 0,
    scope: reader.u8(at + 3) ?? 0,
    index: reader.u32(at + 4) ?? 0,
  };
  if (skipAttributes) return addr;
  const attributes = walkAttributes(context, { ...region, start: at + IFADDRMSG_LEN }, 'ifaddrmsg');
  for (const attribute of attributes) {
    switch (attribute.type) {
      case IFA_LOCAL:
        addr.local = ipOf(context, attribute, 'IFA_LOCAL');
        break;
      case IFA_ADDRESS:
        addr.address = ipOf(context, attribute, 'IFA_ADDRESS');
        break;
      case IFA_BROADCAST:
        addr.broadcast = ipOf(context, attribute, 'IFA_BROADCAST');
        break;
      case IFA_LABEL:
        addr.label = stringOf(context, attribute);
        break;
    }
  }
  return withoutUndefined(addr);
}

function decodeRoute(
  context: MessageContext,
  region: Region,
  skipAttributes: boolean,
): RouteMessage {
  const { reader } = context;
  const at = region.start;
  const route: RouteMessage = {
    family: reader.u8(at) ?? 0,
    dstLen: reader.u8(at + 1) ?? 0,
    srcLen: reader.u8(at + 2) ?? 0,
    tos: reader.u8(at + 3) ?? 0,
    table: reader.u8(at + 4) ?? 0,
    protocol: reader.u8(at + 5) ?? 0,
    scope: reader.u8(at + 6) ?? 0,
    type: reader.u8(at + 7) ?? 0,
    flags: reader.u32(at + 8) ?? 0,
  };
  if (skipAttributes) return route;
  const attributes = walkAttributes(context, { ...region, start: at + RTMSG_LEN }, 'rtmsg');
  for (const attribute of attributes) {
    switch (attribute.type) {
      case RTA_DST: {
        const ip = ipOf(context, attribute, 'RTA_DST');
        if (ip !== undefined) route.dst = `${ip}/${route.dstLen}`;
        break;
      }
      case RTA_SRC: {
        const ip = ipOf(context, attribute, 'RTA_SRC');
        if (ip !== undefined) route.src = `${ip}/${route.srcLen}`;
        break;
      }
      case RTA_GATEWAY:
        route.gateway = ipOf(context, attribute, 'RTA_GATEWAY');
        break;
      case RTA_PREFSRC:
        route.prefsrc = ipOf(context, attribute, 'RTA_PREFSRC');
        break;
      case RTA_OIF:
        route.oif = u32Of(context, attribute, 'RTA_OIF');
        break;
      case RTA_IIF:
        route.iif = u32Of(context, attribute, 'RTA_IIF');
        break;
      case RTA_PRIORITY:
        route.priority = u32Of(context, attribute, 'RTA_PRIORITY');
        break;
      case RTA_TABLE:
        route.tableId = u32Of(context, attribute, 'RTA_TABLE');
        break;
    }
  }
  return withoutUndefined(route);
}

/**
 * struct nlmsgerr: the error (negative errno, 0 for an ack), the request's header (and, without
 * NLM_F_CAPPED, the rest of the request), then extended-ack attributes when NLM_F_ACK_TLVS is set.
 */
function decodeError(context: MessageContext, body: Region): ErrorMessage | undefined {
  const { reader, message } = context;
  if (body.end - body.start < 4) {
    message.problems.push(
      `NLMSG_ERROR body is ${body.end - body.start} bytes, its error code needs 4`,
    );
    return undefined;
  }
  const code = body.cap - body.start >= 4 ? reader.i32(body.start) : undefined;
  if (code === undefined) return undefined;
  if (code > 0) message.problems.push(`error code ${code} is positive: the kernel sends -errno`);
  const errno = Math.abs(code);
  const error: ErrorMessage = { errno, ack: errno === 0, errnoName: errnoName(errno) };
  const echoAt = body.start + 4;
  if (body.end - echoAt < NLMSG_HDRLEN) {
    message.problems.push(
      `NLMSG_ERROR has ${Math.max(0, body.end - echoAt)} bytes for the request header, which needs ${NLMSG_HDRLEN}`,
    );
    return error;
  }
  if (body.cap - echoAt < NLMSG_HDRLEN) return error;
  const requestType = reader.u16(echoAt + 4) ?? 0;
  const requestFlags = reader.u16(echoAt + 6) ?? 0;
  const requestLength = reader.u32(echoAt) ?? 0;
  error.request = {
    type: requestType,
    typeName: netlinkTypeName(requestType),
    flags: requestFlags,
    flagNames: netlinkFlagNames(requestType, requestFlags),
    seq: reader.u32(echoAt + 8) ?? 0,
    portId: reader.u32(echoAt + 12) ?? 0,
    length: requestLength,
  };
  let extackAt = echoAt + NLMSG_HDRLEN;
  if ((message.flags & NLM_F_CAPPED) === 0 && requestLength > NLMSG_HDRLEN) {
    const echoEnd = echoAt + requestLength;
    if (echoEnd > body.end) {
      message.problems.push(
        `the echoed request says ${requestLength} bytes, the error message holds ${body.end - echoAt}`,
      );
      return error;
    }
    extackAt = echoAt + align(requestLength);
    if (context.depth + 1 < MAX_DEPTH) {
      const captured = context.reader.bytes.subarray(0, body.cap);
      error.echoed = decodeMessageAt(captured, echoAt, echoEnd, context.depth + 1).message;
    }
  }
  if ((message.flags & NLM_F_ACK_TLVS) !== 0 && extackAt < body.end) {
    const extack: { msg?: string; offset?: number } = {};
    const region: Region = { start: extackAt, end: body.end, cap: Math.min(body.end, body.cap) };
    for (const attribute of walkAttributes(context, region, 'extended ack')) {
      if (attribute.type === NLMSGERR_ATTR_MSG) extack.msg = stringOf(context, attribute);
      else if (attribute.type === NLMSGERR_ATTR_OFFS) {
        extack.offset = u32Of(context, attribute, 'NLMSGERR_ATTR_OFFS');
      }
    }
    error.extack = withoutUndefined(extack);
  }
  return withoutUndefined(error);
}

/**
 * The attributes in a region, NLA_ALIGNed, with NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off the
 * type. Stops at the first attribute that lies about its length, and after the first one the
 * capture cut (which is returned, with `cap < end`, so that nests are read as far as they go).
 */
function walkAttributes(context: MessageContext, region: Region, where: string): Attribute[] {
  const { reader, message, base } = context;
  const attributes: Attribute[] = [];
  let at = region.start;
  while (at < region.end) {
    if (region.end - at < NLA_HDRLEN) {
      if (region.cap < region.end) message.truncated = true;
      else {
        message.problems.push(
          `${where}: ${region.end - at} bytes left over after the attributes (at byte ${at - base})`,
        );
      }
      break;
    }
    if (region.cap - at < NLA_HDRLEN) {
      message.truncated = true;
      break;
    }
    const length = reader.u16(at) ?? 0;
    const type = (reader.u16(at + 2) ?? 0) & NLA_TYPE_MASK;
    if (length < NLA_HDRLEN) {
      message.problems.push(
        `${where}: attribute at byte ${at - base} has length ${length}, shorter than its ${NLA_HDRLEN}-byte header`,
      );
      break;
    }
    if (at + length > region.end) {
      message.problems.push(
        `${where}: attribute type ${type} at byte ${at - base} has length ${length}, past the ${region.end - at} bytes left`,
      );
      break;
    }
    const end = at + length;
    const attribute: Attribute = {
      type,
      at: at - base,
      start: at + NLA_HDRLEN,
      end,
      cap: Math.min(end, region.cap),
    };
    attributes.push(attribute);
    if (attribute.cap < attribute.end) {
      message.truncated = true;
      break;
    }
    at += align(length);
  }
  return attributes;
}

function complete(attribute: Attribute): boolean {
  return attribute.cap === attribute.end;
}

function u32Of(context: MessageContext, attribute: Attribute, name: string): number | undefined {
  if (!complete(attribute)) return undefined;
  if (attribute.end - attribute.start < 4) {
    context.message.problems.push(
      `${name} is ${attribute.end - attribute.start} bytes, expected 4`,
    );
    return undefined;
  }
  return context.reader.u32(attribute.start);
}

function i32Of(context: MessageContext, attribute: Attribute, name: string): number | undefined {
  const value = u32Of(context, attribute, name);
  return value === undefined ? undefined : value | 0;
}

/** A NUL-terminated string attribute; the text before the first NUL. */
function stringOf(context: MessageContext, attribute: Attribute): string | undefined {
  if (!complete(attribute)) return undefined;
  const payload = context.reader.bytes.subarray(attribute.start, attribute.end);
  const nul = payload.indexOf(0);
  return new TextDecoder().decode(nul === -1 ? payload : payload.subarray(0, nul));
}

function macOf(attribute: Attribute, context: MessageContext): string | undefined {
  if (!complete(attribute)) return undefined;
  const payload = context.reader.bytes.subarray(attribute.start, attribute.end);
  return Array.from(payload, (byte) => byte.toString(16).padStart(2, '0')).join(':');
}

/** An address by its length: 4 bytes IPv4, 16 bytes IPv6. */
function ipOf(context: MessageContext, attribute: Attribute, name: string): string | undefined {
  if (!complete(attribute)) return undefined;
  const payload = context.reader.bytes.subarray(attribute.start, attribute.end);
  if (payload.length === 4) return payload.join('.');
  if (payload.length === 16) return ipv6Text(payload);
  context.message.problems.push(`${name} is ${payload.length} bytes, not an IPv4 or IPv6 address`);
  return undefined;
}

/** RFC 5952 text: lower case, leading zeros dropped, the longest run of two or more zero groups as '::'. */
function ipv6Text(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((group) => group.toString(16))
      .join(':');
  if (bestStart === -1) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

function align(length: number): number {
  return length + ((4 - (length % 4)) % 4);
}

function notCaptured(): NetlinkMessage {
  return {
    type: 0,
    typeName: 'not captured',
    flags: 0,
    flagNames: [],
    seq: 0,
    portId: 0,
    length: 0,
    truncated: true,
    problems: [],
  };
}

/** Optional fields stay absent rather than present and undefined, so results compare and print cleanly. */
function withoutUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) {
    if (value[key] === undefined && key !== 'up') delete value[key];
  }
  return value;
}

/** Bounds-checked little-endian reads: undefined past the captured bytes. */
class Reader {
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  u8(at: number): number | undefined {
    return at >= 0 && at + 1 <= this.bytes.length ? this.view.getUint8(at) : undefined;
  }

  u16(at: number): number | undefined {
    return at >= 0 && at + 2 <= this.bytes.length ? this.view.getUint16(at, true) : undefined;
  }

  u32(at: number): number | undefined {
    return at >= 0 && at + 4 <= this.bytes.length ? this.view.getUint32(at, true) : undefined;
  }

  i32(at: number): number | undefined {
    return at >= 0 && at + 4 <= this.bytes.length ? this.view.getInt32(at, true) : undefined;
  }
}
