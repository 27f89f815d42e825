//! Dates for names (experiments) and filters (a run's age), and the curves' thinning and
//! smoothing for the plots.

/// Minute-precision UTC time of `secs` since the Unix epoch, as `2026-12-03 13:52`: names
/// of experiments, readable and sortable.
pub fn utc_minute(secs: u64) -> String {
    // Days to a civil date (the proleptic Gregorian calendar, eras of 400 years).
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let minute = secs % 86_400 / 60;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        minute / 60,
        minute % 60
    )
}

/// Now, in seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now, as [`utc_minute`] writes it.
pub fn now_utc_minute() -> String {
    utc_minute(now_unix())
}

/// A curve thinned to at most two points per column of `columns` equal spans of x: the
/// lowest and the highest, in x order, so a spike one step wide stays visible at any zoom
/// and a 3,000-step curve costs a plot a few hundred points.
pub fn downsample_min_max(points: &[[f64; 2]], columns: usize) -> Vec<[f64; 2]> {
    if points.len() <= 2 * columns.max(1) {
        return points.to_vec();
    }
    let (x0, x1) = (points[0][0], points[points.len() - 1][0]);
    let width = (x1 - x0) / columns as f64;
    if width.is_nan() || width <= 0.0 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(2 * columns + 2);
    let mut start = 0;
    while start < points.len() {
        // The last point (x = x1) belongs to the last column, not one past it.
        let column_of = |x: f64| ((x - x0) / width).floor().min(columns as f64 - 1.0);
        let column = column_of(points[start][0]);
        let mut end = start + 1;
        while end < points.len() && column_of(points[end][0]) <= column {
            end += 1;
        }
        let span = &points[start..end];
        let lowest = (0..span.len())
            .min_by(|a, b| span[*a][1].total_cmp(&span[*b][1]))
            .expect("a column holds a point");
        let highest = (0..span.len())
            .max_by(|a, b| span[*a][1].total_cmp(&span[*b][1]))
            .expect("a column holds a point");
        let (first, second) = (lowest.min(highest), lowest.max(highest));
        out.push(span[first]);
        if second != first {
            out.push(span[second]);
        }
        start = end;
    }
    out
}

/// Exponential moving average of a curve's y values (`alpha` = weight of the past, 0..1),
/// bias-corrected so the start is not pulled towards zero.
pub fn ema(points: &[[f64; 2]], alpha: f64) -> Vec<[f64; 2]> {
    if alpha <= 0.0 {
        return points.to_vec();
    }
    let mut avg = 0.0;
    let mut weight = 0.0;
    points
        .iter()
        .map(|[x, y]| {
            avg = alpha * avg + (1.0 - alpha) * y;
            weight = alpha * weight + (1.0 - alpha);
            [*x, avg / weight]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_minutes_are_calendar_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minute(1_796_302_020), "2026-12-03 12:47");
    }

    #[test]
    fn downsampling_keeps_a_spike_and_the_ends() {
        let mut points: Vec<[f64; 2]> = (0..3000).map(|i| [i as f64, 1.0]).collect();
        points[1234][1] = 9.0;
        points[2000][1] = -4.0;
        let thin = downsample_min_max(&points, 300);
        assert!(thin.len() <= 600, "{}", thin.len());
        assert!(thin.contains(&[1234.0, 9.0]), "the spike stays");
        assert!(thin.contains(&[2000.0, -4.0]), "the dip stays");
        assert_eq!(thin.first(), Some(&[0.0, 1.0]));
        assert!(thin.windows(2).all(|w| w[0][0] < w[1][0]), "x order kept");
        // Short curves pass through untouched.
        assert_eq!(
            downsample_min_max(&points[..50], 300),
            points[..50].to_vec()
        );
    }

    #[test]
    fn ema_is_bias_corrected_and_smooths() {
        let pts = vec![[0.0, 4.0], [1.0, 4.0], [2.0, 0.0]];
        let s = ema(&pts, 0.5);
        assert_eq!(s[0], [0.0, 4.0]);
        assert_eq!(s[1], [1.0, 4.0]);
        assert!(s[2][1] > 0.0 && s[2][1] < 4.0);
        assert_eq!(ema(&pts, 0.0), pts);
    }
}
