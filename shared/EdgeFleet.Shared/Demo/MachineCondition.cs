namespace EdgeFleet.Shared.Demo;

/// <summary>The classes the demo vibration model tells apart, in output order.</summary>
public enum MachineCondition
{
    Normal = 0,
    Imbalance = 1,
    BearingWear = 2,
}

public static class MachineConditions
{
    /// <summary>Labels as the model's outputs are ordered; also written into the model's metadata.</summary>
    public static readonly IReadOnlyList<string> Labels = ["normal", "imbalance", "bearing-wear"];

    public static bool TryParse(string text, out MachineCondition condition)
    {
        var index = Labels.ToList().IndexOf(text);
        condition = (MachineCondition)Math.Max(index, 0);
        return index >= 0;
    }
}
