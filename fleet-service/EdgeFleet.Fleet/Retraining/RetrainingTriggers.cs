using System.Globalization;
using EdgeFleet.Fleet.Drift;

namespace EdgeFleet.Fleet.Retraining;

/// <summary>The fleet's mean top-class confidence over recent windows, and the model card's.</summary>
public sealed record ConfidenceReading(double Mean, double Baseline, long Count);

/// <summary>Why a job is due.</summary>
public sealed record TriggerDecision(string Trigger, string Reason, IReadOnlyList<DriftAlert> Alerts, ConfidenceReading? Confidence);

/// <summary>
/// The policy rules, as one pure function: whether a model is due for an automatic retraining job now. Nothing is
/// due while the cooldown since the last job runs; drift counts only alerts no earlier job was started for, so one
/// drift episode makes one job (not one per device, window or segment).
/// </summary>
public static class RetrainingTriggers
{
    public static TriggerDecision? Evaluate(RetrainingPolicy policy, DateTimeOffset now, RetrainingJob? lastJob, IReadOnlyCollection<DriftAlert> activeAlerts,
        IReadOnlySet<string> alertsTaken, ConfidenceReading? confidence)
    {
        if (!policy.Enabled)
            return null;
        if (lastJob is not null && now - lastJob.CreatedAt < TimeSpan.FromHours(policy.CooldownHours))
            return null;
        if (policy.Drift is { } drift)
        {
            var sustained = activeAlerts.Where(a => a.Model == policy.ModelId && a.Active && a.Windows >= drift.MinWindows && !alertsTaken.Contains(a.Id)).ToList();
            var features = sustained.Select(a => a.Feature).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            if (features.Count >= drift.MinFeatures)
            {
                var segments = sustained.Select(a => a.Segment).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal);
                return new TriggerDecision("drift", string.Create(CultureInfo.InvariantCulture,
                    $"drift on {features.Count} feature(s) ({string.Join(", ", features)}) in segment(s) {string.Join(", ", segments)} for at least {drift.MinWindows} windows"),
                    sustained, null);
            }
        }
        if (policy.Confidence is { } c && confidence is { } reading && reading.Baseline - reading.Mean > c.MaxDrop)
        {
            return new TriggerDecision("confidence", string.Create(CultureInfo.InvariantCulture,
                $"mean confidence {reading.Mean:F3} over the last {c.Windows} windows is {reading.Baseline - reading.Mean:F3} below the card's {reading.Baseline:F3} (limit {c.MaxDrop:F3})"), [], reading);
        }
        if (policy.EveryHours is { } hours && now - (lastJob?.CreatedAt ?? policy.UpdatedAt) >= TimeSpan.FromHours(hours))
            return new TriggerDecision("schedule", string.Create(CultureInfo.InvariantCulture, $"scheduled every {hours:G} h"), [], null);
        return null;
    }
}
