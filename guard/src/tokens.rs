//! Counting a request's tokens before it goes upstream, for the reservation token limits
//! take on admission (the proxy settles to the upstream's own count afterwards). Models
//! whose encoding tiktoken knows (OpenAI's) are counted exactly with its BPE tables,
//! which ship inside the crate; any other model by the usual approximation of one token
//! per four bytes of UTF-8, which settling corrects.

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// Bytes per token where no tokenizer is known: OpenAI's rule of thumb for English.
const BYTES_PER_TOKEN: usize = 4;

/// The BPE tables for a model, when tiktoken knows its encoding.
fn bpe_of(model: Option<&str>) -> Option<&'static CoreBPE> {
    match get_tokenizer(model?)? {
        Tokenizer::O200kBase => Some(tiktoken_rs::o200k_base_singleton()),
        Tokenizer::O200kHarmony => Some(tiktoken_rs::o200k_harmony_singleton()),
        Tokenizer::Cl100kBase => Some(tiktoken_rs::cl100k_base_singleton()),
        Tokenizer::P50kBase | Tokenizer::R50kBase | Tokenizer::P50kEdit | Tokenizer::Gpt2 => None,
    }
}

/// Tokens `texts` take for `model` (without the few a chat format adds per message).
pub(crate) fn count(model: Option<&str>, texts: &[&str]) -> u64 {
    let tokens: usize = match bpe_of(model) {
        Some(bpe) => texts.iter().map(|text| bpe.encode_ordinary(text).len()).sum(),
        None => texts.iter().map(|text| text.len().div_ceil(BYTES_PER_TOKEN)).sum(),
    };
    tokens as u64
}

/// Loads the tables (a third of a second each in a release build) before the first
/// request needs them.
pub(crate) fn warm() {
    for model in ["gpt-4o", "gpt-4"] {
        count(Some(model), &["warm"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_models_are_counted_by_their_own_encoding_and_others_approximately() {
        let text = "Hello world, how are you doing today?";
        assert_eq!(count(Some("gpt-4o-mini"), &[text]), 9);
        assert_eq!(count(Some("gpt-4-0613"), &[text]), 9);
        assert_eq!(count(Some("gpt-4o"), &["hello world", " hello world"]), 4);
        assert_eq!(count(Some("claude-sonnet-4"), &[text]), text.len().div_ceil(4) as u64);
        assert_eq!(count(None, &[text, "abcde"]), 10 + 2);
    }
}
