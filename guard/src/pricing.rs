//! What a request's tokens cost, from the policy's weights per model
//! (`rateLimit.costs`), and the model family its tokens are counted under: the weight
//! entry its model starts with (the longest), else `other`, so the metrics' label set is
//! the policy's list and no more.

use godel_config::ModelCost;

/// The family of every model no weight entry matches.
pub(crate) const OTHER: &str = "other";

/// Tokens of one request, as the upstream's `usage` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TokenCount {
    /// Prompt tokens, cached ones included.
    pub(crate) input: u64,
    /// The part of `input` the upstream served from its prompt cache.
    pub(crate) cached_input: u64,
    pub(crate) output: u64,
}

impl TokenCount {
    pub(crate) fn total(&self) -> u64 {
        self.input + self.output
    }
}

pub(crate) struct Pricing {
    /// Longest model prefix first, so the most specific entry wins.
    costs: Vec<ModelCost>,
}

impl Pricing {
    pub(crate) fn new(costs: &[ModelCost]) -> Self {
        let mut costs = costs.to_vec();
        costs.sort_by_key(|cost| std::cmp::Reverse(cost.model.len()));
        Self { costs }
    }

    fn entry(&self, model: Option<&str>) -> Option<&ModelCost> {
        let model = model?;
        self.costs.iter().find(|cost| model.starts_with(&cost.model))
    }

    /// The family `model` is counted under.
    pub(crate) fn family(&self, model: Option<&str>) -> &str {
        self.entry(model).map_or(OTHER, |cost| &cost.model)
    }

    /// What `tokens` of `model` cost; 0 for a model without weights.
    pub(crate) fn spend(&self, model: Option<&str>, tokens: TokenCount) -> f64 {
        let Some(cost) = self.entry(model) else { return 0.0 };
        let cached = tokens.cached_input.min(tokens.input);
        let fresh = (tokens.input - cached) as f64 * cost.input;
        let cached = cached as f64 * cost.cached_input.unwrap_or(cost.input);
        (fresh + cached + tokens.output as f64 * cost.output) / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(model: &str, input: f64, cached_input: Option<f64>, output: f64) -> ModelCost {
        ModelCost { model: model.into(), input, cached_input, output }
    }

    #[test]
    fn the_longest_prefix_prices_and_names_the_family() {
        let pricing = Pricing::new(&[cost("gpt-4o", 2.5, Some(1.25), 10.0), cost("gpt-4o-mini", 0.15, None, 0.6)]);
        let tokens = TokenCount { input: 1_000_000, cached_input: 400_000, output: 100_000 };
        assert_eq!(pricing.family(Some("gpt-4o-2024-08-06")), "gpt-4o");
        assert_eq!(pricing.family(Some("gpt-4o-mini")), "gpt-4o-mini");
        assert_eq!(pricing.family(Some("llama-3")), OTHER);
        assert_eq!(pricing.family(None), OTHER);
        assert!((pricing.spend(Some("gpt-4o"), tokens) - (0.6 * 2.5 + 0.4 * 1.25 + 0.1 * 10.0)).abs() < 1e-9);
        assert!((pricing.spend(Some("gpt-4o-mini"), tokens) - (0.15 + 0.06)).abs() < 1e-9, "cached at the input price");
        assert_eq!(pricing.spend(Some("llama-3"), tokens), 0.0);
    }
}
