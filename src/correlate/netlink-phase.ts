// Names an rtnetlink request as a handshake step (the phase names of docs/records.md) and lists what a user reads of it.
import type { NetlinkMessage } from '../decode/rtnetlink.js';

const NLM_F_CREATE = 0x400;
const IFF_UP = 0x1;

/** The phase name for a request: the textbook step it performs, or `rtnetlink <TYPE>` for the plumbing around it. */
export function netlinkPhaseName(message: NetlinkMessage): string {
  const link = message.link;
  switch (message.typeName) {
    case 'RTM_NEWLINK':
    case 'RTM_SETLINK': {
      if (!link) break;
      const creating = (message.flags & NLM_F_CREATE) !== 0 && link.ifindex === 0;
      if (creating && link.kind === 'veth') return 'veth create';
      if (link.master !== undefined && link.master !== 0) return 'bridge attach';
      if (!creating && (link.netnsFd !== undefined || link.netnsPid !== undefined))
        return 'veth move';
      if (!creating && link.ifname !== undefined && link.ifindex !== 0) return 'link rename';
      if ((link.change & IFF_UP) !== 0 && (link.flags & IFF_UP) !== 0) return 'link up';
      break;
    }
    case 'RTM_DELLINK':
      return 'veth delete';
    case 'RTM_NEWADDR':
      return 'addr add';
    case 'RTM_NEWROUTE':
      return 'route add';
  }
  return `rtnetlink ${message.typeName}`;
}

/** The request's facts as span attributes: type, flags, and the decoded fields that say what it changed. */
export function netlinkAttributes(
  message: NetlinkMessage,
): Record<string, string | number | boolean> {
  const attributes: Record<string, string | number | boolean> = {
    'podwire.netlink.type': message.typeName,
    'podwire.netlink.flags': message.flagNames.join('|'),
    'podwire.netlink.seq': message.seq,
  };
  if (message.truncated) attributes['podwire.netlink.truncated'] = true;
  const link = message.link;
  if (link) {
    if (link.ifindex) attributes['podwire.link.index'] = link.ifindex;
    if (link.ifname !== undefined) attributes['network.interface.name'] = link.ifname;
    if (link.kind !== undefined) attributes['podwire.link.kind'] = link.kind;
    if (link.master !== undefined) attributes['podwire.link.master_index'] = link.master;
    if (link.netnsFd !== undefined) attributes['podwire.link.netns_fd'] = link.netnsFd;
    if (link.netnsPid !== undefined) attributes['podwire.link.netns_pid'] = link.netnsPid;
    if (link.mtu !== undefined) attributes['podwire.link.mtu'] = link.mtu;
    if (link.peer?.ifname !== undefined) attributes['podwire.veth.peer_name'] = link.peer.ifname;
    if (link.peer?.netnsFd !== undefined)
      attributes['podwire.veth.peer_netns_fd'] = link.peer.netnsFd;
    if (link.change & IFF_UP) attributes['podwire.link.up'] = (link.flags & IFF_UP) !== 0;
  }
  const addr = message.addr;
  if (addr) {
    attributes['podwire.addr.index'] = addr.index;
    if (addr.local ?? addr.address)
      attributes['podwire.addr.address'] = `${addr.local ?? addr.address}/${addr.prefixlen}`;
  }
  const route = message.route;
  if (route) {
    attributes['podwire.route.dst'] = route.dst ?? (route.family === 10 ? '::/0' : '0.0.0.0/0');
    if (route.gateway !== undefined) attributes['podwire.route.gateway'] = route.gateway;
    if (route.oif !== undefined) attributes['podwire.route.oif'] = route.oif;
  }
  return attributes;
}
