//! A tier's limits as the engine applies them: the policy's numbers, lowered for one
//! tenant by the tier's `limitsHeader` when the application sends it. A header value can
//! only lower a number (the tier is the ceiling), so whoever forges one gains nothing.

use godel_config::Tier;

use crate::limiter::{BucketLimit, UsageLimit};

/// One tier's limits, read from the policy once.
#[derive(Clone, Debug)]
pub(crate) struct TierLimit {
    pub(crate) bucket: BucketLimit,
    pub(crate) usage: UsageLimit,
    /// `false` is shadow mode: refusals are counted, never applied.
    pub(crate) enforce: bool,
    pub(crate) max_streams: Option<u32>,
    /// The header a tenant's numbers come in, when the tier reads one.
    pub(crate) header: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "header `{header}` must be `key=value` pairs separated by commas, with keys ratePerSecond, burst, \
     tokensPerMinute, tokensPerDay or spendPerDay and positive numbers"
)]
pub struct InvalidLimits {
    header: String,
}

impl InvalidLimits {
    pub(crate) fn of(header: &str) -> Self {
        Self { header: header.to_owned() }
    }
}

impl From<&Tier> for TierLimit {
    fn from(tier: &Tier) -> Self {
        let as_f64 = |n: Option<u64>| n.map(|n| n as f64);
        Self {
            bucket: BucketLimit { rate_per_second: tier.rate_per_second, burst: f64::from(tier.burst) },
            usage: UsageLimit {
                tokens_per_minute: as_f64(tier.tokens_per_minute),
                tokens_per_day: as_f64(tier.tokens_per_day),
                spend_per_day: tier.spend_per_day,
            },
            enforce: tier.enforce,
            max_streams: tier.max_streams,
            header: tier.limits_header.clone(),
        }
    }
}

impl TierLimit {
    /// The limits for a request whose `limitsHeader` says `value` (`None` when the tier
    /// reads no header or the request has none).
    pub(crate) fn lowered_by(&self, value: Option<&str>) -> Result<(BucketLimit, UsageLimit), InvalidLimits> {
        let (mut bucket, mut usage) = (self.bucket, self.usage);
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else { return Ok((bucket, usage)) };
        let invalid = || InvalidLimits::of(self.header.as_deref().unwrap_or_default());
        for pair in value.split(',') {
            let (key, number) = pair.split_once('=').ok_or_else(invalid)?;
            let number: f64 = number.trim().parse().map_err(|_| invalid())?;
            if !(number.is_finite() && number > 0.0) {
                return Err(invalid());
            }
            // No tier number is an infinite ceiling: a tenant's number then stands.
            let lower = |slot: &mut Option<f64>| *slot = Some(slot.map_or(number, |tier| tier.min(number)));
            match key.trim() {
                "ratePerSecond" => bucket.rate_per_second = bucket.rate_per_second.min(number),
                "burst" => bucket.burst = bucket.burst.min(number.floor().max(1.0)),
                "tokensPerMinute" => lower(&mut usage.tokens_per_minute),
                "tokensPerDay" => lower(&mut usage.tokens_per_day),
                "spendPerDay" => lower(&mut usage.spend_per_day),
                _ => return Err(invalid()),
            }
        }
        Ok((bucket, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> TierLimit {
        let mut tier = Tier::new("business", 10.0, 20);
        tier.tokens_per_minute = Some(100_000);
        tier.limits_header = Some("x-tenant-limits".into());
        TierLimit::from(&tier)
    }

    #[test]
    fn a_header_lowers_the_tiers_numbers_and_never_raises_them() {
        let (bucket, usage) = tier().lowered_by(Some("tokensPerMinute=20000, ratePerSecond=50, burst=5")).unwrap();
        assert_eq!(usage.tokens_per_minute, Some(20_000.0));
        assert_eq!(bucket.rate_per_second, 10.0, "50 is over the tier's 10: the tier stands");
        assert_eq!(bucket.burst, 5.0);
        let (_, usage) = tier().lowered_by(Some("tokensPerMinute=900000,tokensPerDay=1000000")).unwrap();
        assert_eq!(usage.tokens_per_minute, Some(100_000.0), "never above the tier");
        assert_eq!(usage.tokens_per_day, Some(1_000_000.0), "the tier sets none: the tenant's stands");
        assert_eq!(tier().lowered_by(None).unwrap().1, tier().usage);
    }

    #[test]
    fn a_malformed_header_is_an_error_naming_the_header_not_its_value() {
        let expected = InvalidLimits::of("x-tenant-limits");
        for bad in ["tokensPerMinute", "tokensPerMinute=lots", "tokensPerMinute=-5", "gold=1", "burst=inf"] {
            assert_eq!(tier().lowered_by(Some(bad)), Err(expected.clone()), "{bad}");
        }
        assert!(expected.to_string().starts_with("header `x-tenant-limits` must be"));
    }
}
