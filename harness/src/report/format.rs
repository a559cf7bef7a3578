//! Number formatting for the report: about three significant digits, durations in ms or s.

/// Formats a value with about three significant digits, without an exponent.
///
/// Values of 100 and above keep all their integer digits, so 45210 stays `45210`
/// rather than becoming `45200`.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 {
        0
    } else {
        // 2 - floor(log10(x)) decimals leave three significant digits.
        (2 - magnitude.log10().floor() as i32).max(0) as usize
    };
    let text = format!("{value:.decimals$}");
    // Rounding can produce "-0" from a tiny negative value.
    if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        return "0".to_string();
    }
    text
}

/// Formats milliseconds as `412 ms` below one second and `1.25 s` from one second up.
pub fn duration_ms(ms: f64) -> String {
    if ms.abs() >= 1000.0 {
        format!("{} s", number(ms / 1000.0))
    } else {
        format!("{} ms", number(ms))
    }
}

/// Formats a value like [`number`] but without trailing zeros: `0.5` rather than `0.500`.
/// Claims and axis ticks use it, because their digits do not state a precision.
pub fn trimmed(value: f64) -> String {
    let text = number(value);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Formats a closed range of claim values, `0.5–3`, or `100+` when it has no upper end.
pub fn range(low: f64, high: f64) -> String {
    if high.is_infinite() {
        format!("{}+", trimmed(low))
    } else if low == high {
        trimmed(low)
    } else {
        format!("{}–{}", trimmed(low), trimmed(high))
    }
}

/// Formats a count: whole numbers without decimals, anything else like [`number`].
pub fn count(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        number(value)
    }
}

/// Escapes text for a markdown table cell: pipes and line breaks would end the cell.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}
