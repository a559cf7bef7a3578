//! The Mann-Whitney U test: does one sample tend to have larger values than another,
//! without assuming a distribution? Used so that noise alone never fails a build.

/// Two-sided p-value of the Mann-Whitney U test of `a` against `b`, from the normal
/// approximation with tie and continuity corrections. Returns 1.0 when either side is
/// empty or every value is tied, since then nothing can be told apart.
///
/// NOTE: the normal approximation is coarse below about 8 values per side; it is
/// used there anyway, so p-values for tiny samples are approximate.
pub fn p_value(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let mut pooled: Vec<(f64, usize)> = a.iter().map(|&v| (v, 0)).chain(b.iter().map(|&v| (v, 1))).collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));

    // Average ranks over ties, and the tie term of the variance.
    let n = pooled.len();
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < n {
        let mut end = start;
        while end + 1 < n && pooled[end + 1].0 == pooled[start].0 {
            end += 1;
        }
        let average_rank = (start + end) as f64 / 2.0 + 1.0;
        let tied = (end - start + 1) as f64;
        tie_term += tied.powi(3) - tied;
        rank_sum_a += pooled[start..=end].iter().filter(|(_, side)| *side == 0).count() as f64 * average_rank;
        start = end + 1;
    }

    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let total = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / variance.sqrt();
    (2.0 * (1.0 - standard_normal_cdf(z))).clamp(0.0, 1.0)
}

/// Standard normal CDF through the complementary error function (Abramowitz and
/// Stegun 7.1.26, absolute error below 1.5e-7).
fn standard_normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_not_significant() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(p_value(&a, &a) > 0.9);
    }

    #[test]
    fn separated_samples_significant() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let b = [11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0];
        // Exact two-sided p for complete separation of 10 and 10 is 2 / C(20,10) = 1.08e-5;
        // the normal approximation gives about 1.8e-4.
        let p = p_value(&a, &b);
        assert!(p < 0.001, "p = {p}");
        assert!(p > 1e-6, "p = {p}");
        assert_eq!(p, p_value(&b, &a), "two-sided test is symmetric");
    }

    #[test]
    fn known_textbook_value() {
        // U = 3 for these samples; the normal approximation with continuity correction
        // gives z = (|3 - 12.5| - 0.5) / sqrt(5*5*11/12) = 1.88, p = 0.060.
        let a = [1.1, 2.2, 3.3, 4.4, 8.0];
        let b = [5.5, 6.6, 7.7, 9.9, 10.1];
        let p = p_value(&a, &b);
        assert!((p - 0.060).abs() < 0.002, "p = {p}");
    }

    #[test]
    fn empty_or_all_tied_gives_one() {
        assert_eq!(p_value(&[], &[1.0]), 1.0);
        assert_eq!(p_value(&[2.0, 2.0], &[2.0, 2.0, 2.0]), 1.0);
    }

    #[test]
    fn normal_cdf_reference_points() {
        assert!((standard_normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((standard_normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((standard_normal_cdf(-1.959_964) - 0.025).abs() < 1e-6);
    }
}
