/** Text from outside (trigger fields, file names) put into line-based files. */

/** Line breaks become spaces, so a value from a trigger can never start a (forged) line of its own. */
export const withoutLineBreaks = (text: string): string => text.replace(/\r\n|[\r\n\u2028\u2029]/g, " ")
