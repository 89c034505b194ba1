using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// Picks the results worth learning from (top-class confidence below the threshold) and keeps them within a
/// byte budget per clock hour: a hard example that would exceed the hour's budget is counted, not sent, and
/// the count rides on the next one that is. Its size is the record's JSON, estimated from the input length.
/// </summary>
public sealed class HardExampleSampler(long bytesPerHour, TimeProvider time)
{
    private long _hour = -1;
    private long _spent;
    private long _skipped;

    public long Skipped => _skipped;

    public TelemetryRecord? Offer(ModelRef model, string label, float confidence, float threshold, ReadOnlySpan<float> input, long[] shape)
    {
        if (!(confidence < threshold) || bytesPerHour <= 0 || input.Length > HardExample.MaxValues)
            return null;
        var now = time.GetUtcNow();
        var hour = now.ToUnixTimeSeconds() / 3600;
        if (hour != _hour)
            (_hour, _spent) = (hour, 0);
        var size = EstimateBytes(input.Length, model, label);
        if (_spent + size > bytesPerHour)
        {
            _skipped++;
            return null;
        }
        _spent += size;
        var skipped = _skipped;
        _skipped = 0;
        return new TelemetryRecord
        {
            Ts = now,
            Kind = TelemetryKind.HardExample,
            HardExample = new HardExample
            {
                Model = model.Name,
                Version = model.Version,
                Label = label,
                Confidence = confidence,
                Threshold = threshold,
                Shape = shape,
                Input = input.ToArray(),
                Skipped = skipped,
            },
        };
    }

    /// <summary>A float in JSON takes at most 15 characters with its comma; the rest is the envelope.</summary>
    internal static long EstimateBytes(int values, ModelRef model, string label) => 200L + (15L * values) + model.Name.Length + model.Version.Length + label.Length;
}
