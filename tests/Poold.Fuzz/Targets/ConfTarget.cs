using System.Text;
using Poold.Config;
using Poold.Routing;

namespace Poold.Fuzz.Targets;

/// <summary>
/// pgpool.conf text through the lexer and the settings builder, as <see cref="PooldSettings.Load"/> does it minus
/// reading files (<c>include</c> lines are dropped); settings that build are then turned into routing options and
/// shown, as a reload and <c>PGPOOL SHOW</c> do. Problems are reported as diagnostics, never thrown.
/// </summary>
internal static class ConfTarget
{
    public static void Run(ReadOnlySpan<byte> input)
    {
        var entries = new List<ConfEntry>();
        var diagnostics = new List<ConfigDiagnostic>();
        ConfLexer.Parse(Encoding.UTF8.GetString(input), "fuzz.conf", entries, diagnostics);
        entries.RemoveAll(e => e.Name.Equals("include", StringComparison.OrdinalIgnoreCase));
        var result = SettingsBuilder.Build(entries, "/nonexistent/poold-fuzz/poold.conf");
        if (result.Settings is not { } settings)
        {
            if (!result.Diagnostics.Any(d => d.Severity == DiagnosticSeverity.Error))
            {
                throw new FuzzInvariantException("no settings and no error");
            }

            return;
        }

        _ = RoutingOptions.From(settings);
        foreach (var parameter in Params.All)
        {
            if (parameter.Scope == NodeScope.PerNode)
            {
                foreach (var backend in settings.Backends)
                {
                    _ = settings.Show(parameter, backend.Id);
                }
            }
            else
            {
                _ = settings.Show(parameter);
            }
        }
    }
}
