namespace Poold.Config;

internal enum DiagnosticSeverity
{
    Warning,
    Error,
}

/// <summary>One problem found while reading configuration, located as <c>file:line</c>.</summary>
/// <param name="File">The file as the operator named it (line 0 means the file as a whole).</param>
internal sealed record ConfigDiagnostic(DiagnosticSeverity Severity, string File, int Line, string Message)
{
    public static ConfigDiagnostic Error(string file, int line, string message) => new(DiagnosticSeverity.Error, file, line, message);

    public static ConfigDiagnostic Warning(string file, int line, string message) => new(DiagnosticSeverity.Warning, file, line, message);

    public string Location => Line > 0 ? $"{File}:{Line}" : File;

    public override string ToString() =>
        Severity == DiagnosticSeverity.Error ? $"{Location}: {Message}" : $"{Location}: warning: {Message}";
}

/// <summary>Thrown when a configuration file cannot be used; carries every error found, not only the first.</summary>
internal sealed class ConfigException(IReadOnlyList<ConfigDiagnostic> diagnostics)
    : Exception(string.Join(Environment.NewLine, diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)))
{
    public IReadOnlyList<ConfigDiagnostic> Diagnostics { get; } = diagnostics;
}
