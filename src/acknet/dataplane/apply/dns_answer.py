"""DNS answers from a table of records, with dnspython doing the wire format.

The built-in server holds one table per cluster (pushed by the daemon) and answers on the CoreDNS
pods' port 53. Authoritative for cluster.local: a name it does not have is NXDOMAIN; a name it has
without the asked type is NOERROR with no answer (NODATA); a CNAME is followed inside the table.
Names outside the zone are REFUSED: the emulation has no upstream resolver, and nothing is ever
forwarded off the host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

ZONE = dns.name.from_text("cluster.local.")
TTL = 30  # CoreDNS's kubernetes plugin default
Records = Mapping[str, Sequence[Sequence[str]]]


def answer(query_wire: bytes, records: Records) -> bytes | None:
    """The response to one query, or None when the bytes are not a DNS query (dropped, as servers do)."""
    try:
        query = dns.message.from_wire(query_wire)
    except (dns.exception.DNSException, ValueError):
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    if not qname.is_subdomain(ZONE):
        response.flags &= ~dns.flags.AA
        response.set_rcode(dns.rcode.REFUSED)
        return response.to_wire()
    name = qname
    for _ in range(8):  # follow CNAMEs inside the zone, a few hops at most
        found = records.get(name.to_text().lower())
        if found is None:
            if name == qname:
                response.set_rcode(dns.rcode.NXDOMAIN)
            break
        cnames = [value for rtype, value in found if rtype == "CNAME"]
        if cnames and qtype != dns.rdatatype.CNAME:
            response.answer.append(dns.rrset.from_text(name, TTL, "IN", "CNAME", cnames[0]))
            target = dns.name.from_text(cnames[0])
            if not target.is_subdomain(ZONE):
                break
            name = target
            continue
        wanted = [
            value
            for rtype, value in found
            if dns.rdatatype.from_text(rtype) == qtype or qtype == dns.rdatatype.ANY
        ]
        types = {rtype for rtype, _ in found}
        for rtype in sorted(types):
            values = [v for t, v in found if t == rtype and (qtype == dns.rdatatype.ANY or v in wanted)]
            if values:
                response.answer.append(dns.rrset.from_text_list(name, TTL, "IN", rtype, values))
        break
    return response.to_wire()
