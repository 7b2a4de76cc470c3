using System.Globalization;
using System.Text.RegularExpressions;

namespace Poold.IntegrationTests.Support;

/// <summary>A scrape of Prometheus's text exposition format: samples by name and labels, with the format checked line by line.</summary>
internal sealed partial class PromText
{
    private readonly List<(string Name, Dictionary<string, string> Labels, double Value)> _samples = [];

    [GeneratedRegex("""^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$""")]
    private static partial Regex SampleLine();

    [GeneratedRegex("""([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?""")]
    private static partial Regex Label();

    public static PromText Parse(string text)
    {
        var result = new PromText();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# HELP ", StringComparison.Ordinal) || line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                continue;
            }

            var match = SampleLine().Match(line);
            Assert.That(match.Success, Is.True, $"not a sample line of the text format: {line}");
            var labels = Label().Matches(match.Groups[2].Value).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
            var value = match.Groups[3].Value switch
            {
                "+Inf" => double.PositiveInfinity,
                "-Inf" => double.NegativeInfinity,
                "NaN" => double.NaN,
                var v => double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture),
            };
            result._samples.Add((match.Groups[1].Value, labels, value));
        }

        return result;
    }

    /// <summary>The value of the one sample of <paramref name="name"/> with these labels (others may differ); 0 when absent.</summary>
    public double Value(string name, params (string Key, string Value)[] labels)
    {
        var matches = _samples.Where(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Key) == l.Value)).ToList();
        Assert.That(matches, Has.Count.LessThanOrEqualTo(1), $"{name} with {string.Join(",", labels)} is ambiguous");
        return matches.Count == 0 ? 0 : matches[0].Value;
    }

    /// <summary>Every sample of <paramref name="name"/> with these labels, with its labels.</summary>
    public IEnumerable<(IReadOnlyDictionary<string, string> Labels, double Value)> Samples(string name, params (string Key, string Value)[] labels) =>
        _samples.Where(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Key) == l.Value)).Select(s => ((IReadOnlyDictionary<string, string>)s.Labels, s.Value));

    public bool Contains(string name) => _samples.Any(s => s.Name == name);

    public IEnumerable<string> LabelValues(string name, string label) =>
        _samples.Where(s => s.Name == name && s.Labels.ContainsKey(label)).Select(s => s.Labels[label]).Distinct();
}
