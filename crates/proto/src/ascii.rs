//! TYPE A line-ending conversion (RFC 959 §3.1.1.1): the wire uses CRLF, files on this side use
//! LF. Both converters are streaming: state carries across chunk boundaries, so a CR at the end
//! of one read and the LF at the start of the next are handled as one line end.

/// File bytes to wire bytes: a LF not already preceded by CR becomes CRLF.
#[derive(Debug, Default)]
pub struct ToNetwork {
    last_was_cr: bool,
}

impl ToNetwork {
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if b == b'\n' && !self.last_was_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.last_was_cr = b == b'\r';
        }
    }
}

/// Wire bytes to file bytes: CRLF becomes LF; a lone CR is kept.
#[derive(Debug, Default)]
pub struct FromNetwork {
    pending_cr: bool,
}

impl FromNetwork {
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Call at end of data: a trailing lone CR is file content.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_to_net(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = ToNetwork::default();
        let mut out = Vec::new();
        for ch in chunks {
            c.convert(ch, &mut out);
        }
        out
    }

    fn chunks_from_net(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = FromNetwork::default();
        let mut out = Vec::new();
        for ch in chunks {
            c.convert(ch, &mut out);
        }
        c.finish(&mut out);
        out
    }

    #[test]
    fn lf_becomes_crlf_once() {
        assert_eq!(chunks_to_net(&[b"a\nb\r\nc"]), b"a\r\nb\r\nc");
        assert_eq!(chunks_to_net(&[b"a\r", b"\nb\n"]), b"a\r\nb\r\n");
    }

    #[test]
    fn crlf_becomes_lf_across_chunks() {
        assert_eq!(chunks_from_net(&[b"a\r\nb\r\n"]), b"a\nb\n");
        assert_eq!(chunks_from_net(&[b"a\r", b"\nb"]), b"a\nb");
        assert_eq!(chunks_from_net(&[b"a\rb\r"]), b"a\rb\r");
    }
}
