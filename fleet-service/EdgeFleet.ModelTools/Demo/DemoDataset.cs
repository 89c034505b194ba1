using EdgeFleet.Shared.Demo;

namespace EdgeFleet.ModelTools.Demo;

/// <summary>Labelled feature vectors drawn from the synthetic vibration sensor.</summary>
public sealed class DemoDataset
{
    private DemoDataset(float[][] features, int[] labels)
    {
        Features = features;
        Labels = labels;
    }

    public float[][] Features { get; }

    public int[] Labels { get; }

    public int Count => Labels.Length;

    /// <summary>This data and <paramref name="features"/> with their <paramref name="labels"/> after it.</summary>
    public DemoDataset With(IReadOnlyList<float[]> features, IReadOnlyList<int> labels) =>
        new([.. Features, .. features], [.. Labels, .. labels]);

    /// <summary>Draws <paramref name="perClass"/> windows of every condition; same seed, same data.</summary>
    public static DemoDataset Generate(int perClass, int seed)
    {
        var classes = Enum.GetValues<MachineCondition>();
        var features = new float[perClass * classes.Length][];
        var labels = new int[features.Length];
        var window = new float[VibrationSignal.WindowLength];
        var row = 0;
        foreach (var condition in classes)
        {
            var signal = new VibrationSignal(condition, unchecked((seed * 31) + (int)condition) & int.MaxValue);
            for (var i = 0; i < perClass; i++, row++)
            {
                signal.NextWindow(window);
                features[row] = new float[VibrationFeatures.Count];
                VibrationFeatures.Compute(window, features[row]);
                labels[row] = (int)condition;
            }
        }
        return new DemoDataset(features, labels);
    }
}
