using System.Text;

namespace Poold.Hosting;

/// <summary>Prompts of the command-line tools (pg_enc, pcp_*).</summary>
internal static class Terminal
{
    /// <summary>
    /// Reads a secret without echo from the terminal after writing <paramref name="prompt"/> to <paramref name="output"/>;
    /// when standard input is redirected, reads one plain line (null at end of input) without prompting.
    /// </summary>
    public static string? ReadSecret(string prompt, TextWriter output)
    {
        if (Console.IsInputRedirected)
        {
            return Console.In.ReadLine();
        }

        output.Write(prompt);
        var typed = new StringBuilder();
        while (true)
        {
            var key = Console.ReadKey(intercept: true);
            if (key.Key == ConsoleKey.Enter)
            {
                output.WriteLine();
                return typed.ToString();
            }

            if (key.Key == ConsoleKey.Backspace)
            {
                if (typed.Length > 0)
                {
                    typed.Length--;
                }

                continue;
            }

            typed.Append(key.KeyChar);
        }
    }
}
