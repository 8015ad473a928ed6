//! Helpers shared by the fuzz targets: turning one fuzz input into a stream of chunks, so a
//! target sees the same bytes arrive in every split a network read could make.

/// A fuzz input read as `[n, s1 .. sn, payload...]`: `n % 8` chunk sizes, then the bytes to
/// feed. The sizes are used in turn, over and over (`s % 32` bytes each, zero included: a read
/// that brings nothing); with no sizes, or only zeros, the payload comes as one chunk.
/// The top bit of a size asks for that chunk to be written through `LineFramer::input`
/// instead of `push`.
pub struct Chunked<'a> {
    pub payload: &'a [u8],
    sizes: &'a [u8],
}

/// One chunk of a [`Chunked`] input.
pub struct Chunk<'a> {
    pub bytes: &'a [u8],
    /// Append through `LineFramer::input` (a reader filling the buffer) rather than `push`.
    pub direct: bool,
}

impl<'a> Chunked<'a> {
    /// Splits `data` into its header and payload (an empty input is an empty payload).
    pub fn new(data: &'a [u8]) -> Chunked<'a> {
        let Some((&n, rest)) = data.split_first() else {
            return Chunked {
                payload: &[],
                sizes: &[],
            };
        };
        let n = usize::from(n % 8).min(rest.len());
        let (sizes, payload) = rest.split_at(n);
        Chunked { payload, sizes }
    }

    /// `payload` as one chunk.
    pub fn whole(payload: &'a [u8]) -> Chunked<'a> {
        Chunked {
            payload,
            sizes: &[],
        }
    }

    /// The payload in chunks, in order; concatenated they are exactly the payload.
    pub fn chunks(&self) -> Vec<Chunk<'a>> {
        let payload = self.payload;
        if self.sizes.iter().all(|s| s % 32 == 0) {
            return vec![Chunk {
                bytes: payload,
                direct: false,
            }];
        }
        let mut out = Vec::new();
        let mut at = 0;
        for &s in self.sizes.iter().cycle() {
            if at >= payload.len() {
                break;
            }
            let end = (at + usize::from(s % 32)).min(payload.len());
            out.push(Chunk {
                bytes: &payload[at..end],
                direct: s & 0x80 != 0,
            });
            at = end;
        }
        out
    }
}
