using Poold.Config;

namespace Poold.Tests;

/// <summary>Settings from pgpool.conf text, for tests that need a few lines of configuration.</summary>
internal static class TestSettings
{
    public static PooldSettings Parse(string text)
    {
        var entries = new List<ConfEntry>();
        var diagnostics = new List<ConfigDiagnostic>();
        ConfLexer.Parse(text, "pgpool.conf", entries, diagnostics);
        Assert.That(diagnostics, Is.Empty, "the test input must be syntactically valid");
        var result = SettingsBuilder.Build(entries, "/etc/pgpool2/pgpool.conf");
        Assert.That(result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error), Is.Empty, () => string.Join("\n", result.Diagnostics));
        return result.Settings!;
    }
}
