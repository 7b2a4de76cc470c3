using Poold.Fuzz;

namespace Poold.Tests.Fuzz;

/// <summary>
/// Replays every input of the fuzzing corpus (tests/Poold.Fuzz/corpus/TARGET/*: the seeds, and every crash
/// scripts/fuzz.sh has found) through its harness, so each crash ever found stays fixed without running the fuzzer.
/// </summary>
public sealed class FuzzCorpusTests
{
    /// <summary>An input that runs longer than this is a hang (the harnesses take milliseconds).</summary>
    private static readonly TimeSpan HangAfter = TimeSpan.FromSeconds(20);

    private static string CorpusRoot => Path.Combine(AppContext.BaseDirectory, "FuzzCorpus");

    private static IEnumerable<TestCaseData> CorpusFiles() =>
        Directory.EnumerateDirectories(CorpusRoot).Order(StringComparer.Ordinal)
            .SelectMany(dir => Directory.EnumerateFiles(dir).Order(StringComparer.Ordinal).Select(file => (Target: Path.GetFileName(dir), File: Path.GetFileName(file))))
            .Select(c => new TestCaseData(c.Target, c.File).SetName($"CorpusInput_ReplaysWithoutCrashing({c.Target}/{c.File})"));

    [TestCaseSource(nameof(CorpusFiles))]
    public void CorpusInput_ReplaysWithoutCrashing(string target, string file)
    {
        Assert.That(FuzzTargets.All.TryGetValue(target, out var harness), Is.True, $"corpus folder {target} names no harness");
        var input = File.ReadAllBytes(Path.Combine(CorpusRoot, target, file));
        var run = Task.Run(() => harness!(input));
        Assert.That(run.Wait(HangAfter), Is.True, $"{target}/{file} ran longer than {HangAfter.TotalSeconds} s");
    }

    [Test]
    public void EveryHarness_HasACorpusWithSeeds()
    {
        Assert.That(Directory.EnumerateDirectories(CorpusRoot).Select(Path.GetFileName), Is.EquivalentTo(FuzzTargets.All.Keys));
        foreach (var target in FuzzTargets.All.Keys)
        {
            Assert.That(Directory.EnumerateFiles(Path.Combine(CorpusRoot, target)), Is.Not.Empty, target);
        }
    }
}
