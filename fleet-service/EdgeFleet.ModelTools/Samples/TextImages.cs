namespace EdgeFleet.ModelTools.Samples;

/// <summary>
/// Synthetic printed-text images in the input layout of PaddleOCR's models, for calibration and validation
/// when no real images are at hand: dark glyph-like strokes (bars, hooks, dots) on a light, noisy, unevenly lit
/// background, some lines upside down. They exercise the models' activations the way text does; they are not a
/// substitute for a user's own data when judging accuracy.
/// </summary>
public static class TextImages
{
    /// <summary>A text-line crop for the direction classifier: 3×48×192, normalised as (x/255 − 0.5)/0.5.</summary>
    public static float[] ClassifierInput(Random random, out bool upsideDown)
    {
        const int h = 48, w = 192;
        var gray = Canvas(random, h, w);
        var glyphHeight = random.Next(22, 36);
        var top = (h - glyphHeight) / 2 + random.Next(-3, 4);
        var x = random.Next(2, 12);
        var end = random.Next(w / 2, w - 4);
        while (x < end)
            x = Glyph(random, gray, h, w, x, top, glyphHeight) + random.Next(2, 6) + (random.NextDouble() < 0.15 ? glyphHeight / 2 : 0);
        upsideDown = random.NextDouble() < 0.5;
        if (upsideDown)
            Array.Reverse(gray);
        return Normalise(random, gray, [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]);
    }

    /// <summary>A page for the detector: 3×<paramref name="size"/>², normalised with ImageNet's mean and standard deviation.</summary>
    public static float[] DetectorInput(Random random, int size)
    {
        var gray = Canvas(random, size, size);
        var lines = random.Next(3, 9);
        for (var l = 0; l < lines; l++)
        {
            var glyphHeight = random.Next(10, 28);
            var top = random.Next(0, size - glyphHeight);
            var x = random.Next(0, size / 2);
            var end = Math.Min(size - 2, x + random.Next(size / 4, size));
            while (x < end)
                x = Glyph(random, gray, size, size, x, top, glyphHeight) + random.Next(1, 5);
        }
        return Normalise(random, gray, [0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f]);
    }

    private static float[] Canvas(Random random, int h, int w)
    {
        var gray = new float[h * w];
        var level = 200 + random.Next(0, 50);
        var gradient = (float)(random.NextDouble() * 40 - 20);
        for (var y = 0; y < h; y++)
            for (var x = 0; x < w; x++)
                gray[y * w + x] = level + gradient * x / w + (float)(random.NextDouble() * 16 - 8);
        return gray;
    }

    /// <summary>Draws one glyph of strokes from column <paramref name="x"/>; returns the column after it.</summary>
    private static int Glyph(Random random, float[] gray, int h, int w, int x, int top, int height)
    {
        var width = Math.Max(3, (int)(height * (0.4 + random.NextDouble() * 0.5)));
        var ink = random.Next(0, 70);
        var stroke = Math.Max(1, height / 9 + random.Next(0, 2));
        var strokes = random.Next(2, 5);
        for (var s = 0; s < strokes; s++)
        {
            switch (random.Next(4))
            {
                case 0: // vertical bar, full or from the x-height
                    var from = random.NextDouble() < 0.5 ? top : top + height / 3;
                    Fill(gray, h, w, x + random.Next(0, width - stroke + 1), from, stroke, top + height - from, ink);
                    break;
                case 1: // horizontal bar at the top, middle or baseline
                    Fill(gray, h, w, x, top + new[] { height / 3, height / 2 + height / 6, height - stroke }[random.Next(3)], width, stroke, ink);
                    break;
                case 2: // a hook: bar with a foot on the baseline, to give the line an up/down asymmetry
                    Fill(gray, h, w, x, top + height / 3, stroke, height * 2 / 3, ink);
                    Fill(gray, h, w, x, top + height - stroke, width, stroke, ink);
                    break;
                default: // a dot above the x-height
                    Fill(gray, h, w, x + width / 2, top, stroke + 1, stroke + 1, ink);
                    break;
            }
        }
        return x + width;
    }

    private static void Fill(float[] gray, int h, int w, int x, int y, int width, int height, int ink)
    {
        for (var r = Math.Max(0, y); r < Math.Min(h, y + height); r++)
            for (var c = Math.Max(0, x); c < Math.Min(w, x + width); c++)
                gray[r * w + c] = ink;
    }

    private static float[] Normalise(Random random, float[] gray, float[] mean, float[] std)
    {
        var plane = gray.Length;
        var tint = new[] { random.Next(-10, 11), random.Next(-10, 11), random.Next(-10, 11) };
        var result = new float[3 * plane];
        for (var c = 0; c < 3; c++)
            for (var i = 0; i < plane; i++)
                result[c * plane + i] = (Math.Clamp(gray[i] + tint[c], 0, 255) / 255f - mean[c]) / std[c];
        return result;
    }
}
