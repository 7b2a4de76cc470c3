using Poold.Io;

namespace Poold.Tests.Io;

/// <summary>The event threads' yield before they sleep (<c>POOLD_IO_YIELD</c>): what a setting gives, and what a bad one falls back to.</summary>
public sealed class EpollEngineSettingsTests
{
    [TestCase(null, 1)]
    [TestCase("", 1)]
    [TestCase("0", 0)]
    [TestCase("1", 1)]
    [TestCase("3", 3)]
    [TestCase("16", 16)]
    [TestCase("17", 1)]
    [TestCase("-1", 1)]
    [TestCase(" 2", 1)]
    [TestCase("two", 1)]
    public void ConfiguredYields_TakesZeroToSixteen_ElseOne(string? setting, int expected) =>
        Assert.That(EpollEngine.ConfiguredYields(setting), Is.EqualTo(expected));
}
