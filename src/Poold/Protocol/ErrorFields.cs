using System.Buffers;
using System.Text;

namespace Poold.Protocol;

/// <summary>
/// The fields of an ErrorResponse or NoticeResponse: a series of (code byte, NUL-terminated string), ended by a
/// zero byte. <c>S</c> severity, <c>V</c> non-localised severity, <c>C</c> SQLSTATE, <c>M</c> message, <c>D</c>
/// detail, <c>H</c> hint.
/// </summary>
internal sealed record ErrorFields(string Severity, string SqlState, string Message, string? Detail)
{
    public static ErrorFields Parse(ReadOnlySequence<byte> body)
    {
        string severity = "", code = "", message = "";
        string? detail = null;
        var reader = new SequenceReader<byte>(body);
        while (reader.TryRead(out var field) && field != 0)
        {
            if (!reader.TryReadTo(out ReadOnlySequence<byte> value, 0))
            {
                break;
            }

            var text = Encoding.UTF8.GetString(value);
            switch ((char)field)
            {
                case 'V':
                    severity = text;
                    break;
                case 'S' when severity.Length == 0:
                    severity = text;
                    break;
                case 'C':
                    code = text;
                    break;
                case 'M':
                    message = text;
                    break;
                case 'D':
                    detail = text;
                    break;
            }
        }

        return new ErrorFields(severity, code, message, detail);
    }

    public override string ToString() => $"{Severity} {SqlState} {Message}";
}
